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
-- spot/mark/index close only when all its sub-bars exist, so a resampled bar never mixes in
-- missing data. A missing spot/mark/index close is carried from the last bar of the same series
-- that has one, if that bar opened at most `max_filled_hours` before (`filled` is then true);
-- beyond that it stays NULL. The gap itself stays recorded in raw.data_gaps.
{%- set fill_bars = (var('max_filled_hours') * 60 / max_timeframe_minutes()) | round(0, 'ceil') %}
{%- set scan_from = scan_start([1, fill_bars | int] | max) %}

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

-- The last close of each market within `max_filled_hours` before the bar (the bar included).
carried as (
    select
        *,
        {%- for market in ['spot', 'mark', 'index'] %}
        last_value({{ market }}_close ignore nulls) over recent as {{ market }}_close_carried,
        {%- endfor %}
    from all_timeframes
    where perp_complete
    window recent as (
        partition by venue, symbol, timeframe
        order by ts
        range between interval '{{ var("max_filled_hours") }} hours' preceding and current row
    )
),

watermarks as (
    {{ watermarks() }}
)

select
    carried.venue,
    carried.symbol,
    carried.timeframe,
    carried.ts,
    carried.ts + to_minutes(carried.bar_minutes) as close_ts,
    carried.open,
    carried.high,
    carried.low,
    carried.close,
    carried.volume,
    carried.prev_close,
    {%- for market in ['spot', 'mark', 'index'] %}
    coalesce(carried.{{ market }}_close, carried.{{ market }}_close_carried) as {{ market }}_close,
    {%- endfor %}
    (carried.spot_close is null and carried.spot_close_carried is not null)
        or (carried.mark_close is null and carried.mark_close_carried is not null)
        or (carried.index_close is null and carried.index_close_carried is not null) as filled
from carried
left join watermarks
    on carried.venue = watermarks.venue
    and carried.symbol = watermarks.symbol
    and carried.timeframe = watermarks.timeframe
where {{ bars_to_write('carried.ts') }}
