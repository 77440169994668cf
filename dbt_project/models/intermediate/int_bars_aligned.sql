{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['venue', 'symbol', 'timeframe', 'ts'],
        on_schema_change='fail',
    )
}}
-- One row per (venue, symbol, timeframe, bar): perp OHLCV beside the spot, mark and index closes
-- of the same bar, and the perp close one bar length earlier (NULL when that bar is missing).
-- Every timeframe is resampled from the finest perp bars stored per (venue, symbol), reading the
-- other markets at that same timeframe. A bar is kept only when all its perp sub-bars exist; a
-- spot/mark/index close only when all its sub-bars exist (else NULL), so a resampled bar never
-- mixes in missing data.
{%- set scan_from = scan_start(1) %}

-- Not materialized: each market's reference below scans (and filters) the raw table itself,
-- which costs half as much as materializing every market's bars once.
with bars as not materialized (
    select * from {{ ref('stg_market__ohlcv') }}
    where market in ('perp', 'spot', 'mark', 'index')
    {%- if scan_from %}
        and ts >= {{ scan_from }}
    {%- endif %}
),

timeframes as (
    {{ configured_timeframes() }}
),

finest as (
    select venue, symbol, min(bar_minutes) as base_minutes
    from bars
    where market = 'perp'
    group by all
),

perp as (
    select bars.*, finest.base_minutes
    from bars
    inner join finest
        on bars.venue = finest.venue
        and bars.symbol = finest.symbol
        and bars.bar_minutes = finest.base_minutes
    where bars.market = 'perp'
),

{%- for market in ['spot', 'mark', 'index'] %}

{{ market }} as (
    select venue, symbol, timeframe, ts, close as {{ market }}_close
    from bars
    where market = '{{ market }}'
),
{%- endfor %}

-- The finest bars, one row per (venue, symbol, bar) with every market side by side (joins on the
-- raw key: cheaper than pivoting with a group by).
base as (
    select
        perp.venue,
        perp.symbol,
        perp.ts,
        perp.base_minutes,
        perp.open,
        perp.high,
        perp.low,
        perp.close,
        perp.volume,
        previous.close as prev_close,
        spot.spot_close,
        mark.mark_close,
        index.index_close
    from perp
    left join perp as previous
        on perp.venue = previous.venue
        and perp.symbol = previous.symbol
        and perp.ts - to_minutes(perp.base_minutes) = previous.ts
    {%- for market in ['spot', 'mark', 'index'] %}
    left join {{ market }}
        on perp.venue = {{ market }}.venue
        and perp.symbol = {{ market }}.symbol
        and perp.timeframe = {{ market }}.timeframe
        and perp.ts = {{ market }}.ts
    {%- endfor %}
),

coarser as (
    select
        base.venue,
        base.symbol,
        timeframes.timeframe,
        timeframes.bar_minutes,
        timeframes.bar_minutes // base.base_minutes as sub_bars,
        time_bucket(to_minutes(timeframes.bar_minutes), base.ts) as ts,
        base.ts as base_ts,
        base.open,
        base.high,
        base.low,
        base.close,
        base.volume,
        base.prev_close,
        base.spot_close,
        base.mark_close,
        base.index_close
    from base
    inner join timeframes
        on timeframes.bar_minutes > base.base_minutes
        and timeframes.bar_minutes % base.base_minutes = 0
),

resampled as (
    select
        venue,
        symbol,
        timeframe,
        ts,
        any_value(bar_minutes) as bar_minutes,
        arg_min(open, base_ts) as open,
        max(high) as high,
        min(low) as low,
        arg_max(close, base_ts) as close,
        sum(volume) as volume,
        -- the previous bar's close is the close before this bar's first sub-bar
        any_value(prev_close) filter (where base_ts = ts) as prev_close,
        count(*) = any_value(sub_bars) as perp_complete,
        case when count(spot_close) = any_value(sub_bars)
            then arg_max(spot_close, base_ts) end as spot_close,
        case when count(mark_close) = any_value(sub_bars)
            then arg_max(mark_close, base_ts) end as mark_close,
        case when count(index_close) = any_value(sub_bars)
            then arg_max(index_close, base_ts) end as index_close
    from coarser
    group by venue, symbol, timeframe, ts
),

all_timeframes as (
    select
        base.venue,
        base.symbol,
        timeframes.timeframe,
        base.ts,
        base.base_minutes as bar_minutes,
        base.open,
        base.high,
        base.low,
        base.close,
        base.volume,
        base.prev_close,
        true as perp_complete,
        base.spot_close,
        base.mark_close,
        base.index_close
    from base
    inner join timeframes on timeframes.bar_minutes = base.base_minutes
    union all
    select * from resampled
),

watermarks as (
    {{ watermarks() }}
)

select
    all_timeframes.venue,
    all_timeframes.symbol,
    all_timeframes.timeframe,
    all_timeframes.ts,
    all_timeframes.ts + to_minutes(all_timeframes.bar_minutes) as close_ts,
    all_timeframes.open,
    all_timeframes.high,
    all_timeframes.low,
    all_timeframes.close,
    all_timeframes.volume,
    all_timeframes.prev_close,
    all_timeframes.spot_close,
    all_timeframes.mark_close,
    all_timeframes.index_close
from all_timeframes
left join watermarks
    on all_timeframes.venue = watermarks.venue
    and all_timeframes.symbol = watermarks.symbol
    and all_timeframes.timeframe = watermarks.timeframe
where all_timeframes.perp_complete
    and {{ bars_to_write('all_timeframes.ts') }}
