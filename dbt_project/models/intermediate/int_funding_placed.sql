{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['venue', 'symbol', 'timeframe', 'ts'],
        on_schema_change='fail',
    )
}}
-- One row per aligned bar: the funding settled in it and the latest settlement known at its
-- close. Each settlement is placed on the first bar of each timeframe that closes at or after
-- it: the bar that pays it (open < settlement <= close), or the next bar that exists when that
-- one is missing. Settlements before the first scanned bar all land on it, so an incremental
-- build carries the same latest settlement as a full build.
{%- set scan_from = scan_start(1) %}

with bars as (
    select venue, symbol, timeframe, ts, close_ts
    from {{ ref('int_bars_aligned') }}
    {%- if scan_from %}
    where ts >= {{ scan_from }}
    {%- endif %}
),

funding as (
    select venue, symbol, settled_at, funding_rate
    from {{ ref('int_funding_rates_scored') }}
),

timeframes as (
    {{ configured_timeframes() }}
),

-- Most settlements find their paying bar by its key; only the others go through an as-of join,
-- against the bars from their first paying bar on (an as-of join sorts its whole right side:
-- every bar's key, at 10m bars a second of CPU).
settlements as (
    select
        funding.venue,
        funding.symbol,
        funding.settled_at,
        funding.funding_rate,
        timeframes.timeframe,
        time_bucket(
            to_minutes(timeframes.bar_minutes), funding.settled_at - interval 1 microsecond
        ) as paying_ts
    from funding
    cross join timeframes
),

placed as (
    select settlements.*, bars.ts as bar_ts
    from settlements
    left join bars
        on settlements.venue = bars.venue
        and settlements.symbol = bars.symbol
        and settlements.timeframe = bars.timeframe
        and settlements.paying_ts = bars.ts
),

unplaced as (
    select * from placed where bar_ts is null
),

-- Per (venue, symbol, timeframe) with unplaced settlements, the bars from the first of them on.
bars_after_unplaced as (
    select bars.*
    from bars
    inner join (
        select venue, symbol, timeframe, min(paying_ts) as paying_from
        from unplaced
        group by venue, symbol, timeframe
    ) as first_unplaced
        on bars.venue = first_unplaced.venue
        and bars.symbol = first_unplaced.symbol
        and bars.timeframe = first_unplaced.timeframe
        and bars.ts >= first_unplaced.paying_from
),

settlement_bars as (
    select venue, symbol, timeframe, bar_ts as ts, settled_at, funding_rate
    from placed
    where bar_ts is not null
    union all
    select
        unplaced.venue,
        unplaced.symbol,
        unplaced.timeframe,
        bars_after_unplaced.ts,
        unplaced.settled_at,
        unplaced.funding_rate
    from unplaced
    asof inner join bars_after_unplaced
        on unplaced.venue = bars_after_unplaced.venue
        and unplaced.symbol = bars_after_unplaced.symbol
        and unplaced.timeframe = bars_after_unplaced.timeframe
        and unplaced.settled_at <= bars_after_unplaced.close_ts
),

-- Per bar: the rates settled in (open, close] and the latest settlement placed on the bar.
funding_in_bar as (
    select
        venue,
        symbol,
        timeframe,
        ts,
        sum(funding_rate) filter (where settled_at > ts) as funding_rate_settled,
        count(*) filter (where settled_at > ts) as funding_settlements,
        max(settled_at) as latest_settled_at
    from settlement_bars
    group by venue, symbol, timeframe, ts
),

bar_funding as (
    select
        bars.venue,
        bars.symbol,
        bars.timeframe,
        bars.ts,
        coalesce(funding_in_bar.funding_rate_settled, 0.0) as funding_rate_settled,
        coalesce(funding_in_bar.funding_settlements, 0) as funding_settlements,
        last_value(funding_in_bar.latest_settled_at ignore nulls) over (
            partition by bars.venue, bars.symbol, bars.timeframe
            order by bars.ts
            rows between unbounded preceding and current row
        ) as last_settled_at
    from bars
    left join funding_in_bar
        on bars.venue = funding_in_bar.venue
        and bars.symbol = funding_in_bar.symbol
        and bars.timeframe = funding_in_bar.timeframe
        and bars.ts = funding_in_bar.ts
),

watermarks as (
    {{ watermarks() }}
)

select
    bar_funding.venue,
    bar_funding.symbol,
    bar_funding.timeframe,
    bar_funding.ts,
    bar_funding.funding_rate_settled,
    bar_funding.funding_settlements,
    bar_funding.last_settled_at
from bar_funding
left join watermarks
    on bar_funding.venue = watermarks.venue
    and bar_funding.symbol = watermarks.symbol
    and bar_funding.timeframe = watermarks.timeframe
where {{ bars_to_write('bar_funding.ts') }}
