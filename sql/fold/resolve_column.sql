last_value(CASE WHEN (__op <> 'd' OR __kind <> 0) AND NOT coalesce(list_contains(__toast, {label}), false)
                THEN struct_pack(v := {column}) END IGNORE NULLS) OVER by_segment AS {alias}
