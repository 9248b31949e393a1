select
    id as user_id,
    username,
    email as email_pseudonym,
    provider,
    created_at,
    updated_at,
    _cdc_committed_at
from {{ source('auth', 'users') }}
