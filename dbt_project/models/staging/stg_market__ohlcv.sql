-- Bars of every venue, market and timeframe, with their length and close time.
with source as (
    select * from {{ source('raw', 'ohlcv') }}
),

renamed as (
    select
        venue,
        market,
        symbol,
        timeframe,
        {{ timeframe_minutes('timeframe') }} as bar_minutes,
        ts,
        open,
        high,
        low,
        close,
        volume
    from source
)

select
    *,
    ts + to_minutes(bar_minutes) as close_ts
from renamed
