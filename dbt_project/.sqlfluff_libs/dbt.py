"""The `dbt.` cross-database macros the models call, as DuckDB SQL, for sqlfluff's jinja templater
(dbt_project/.sqlfluff: library_path). Lint-only: dbt itself never reads this folder."""


def type_string() -> str:
    return "varchar"


def date_trunc(datepart: str, date: str) -> str:
    return f"date_trunc('{datepart}', {date})"


def datediff(first_date: str, second_date: str, datepart: str) -> str:
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def dateadd(datepart: str, interval: int, from_date_or_timestamp: str) -> str:
    return f"({from_date_or_timestamp} + interval ({interval}) {datepart})"
