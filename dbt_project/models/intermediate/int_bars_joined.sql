-- Each aligned bar with what is known about funding and the order book at its close: the sum of
-- the rates settled in (open, close] (0 if none), the latest settlement at or before the close,
-- the time to the next settlement, and the latest order-book snapshot inside [open, close].
with bars as (
    select * from {{ ref('int_bars_aligned') }}
),

funding as (
    select * from {{ ref('int_funding_rates_scored') }}
),

order_book as (
    select * from {{ ref('int_order_book_imbalance') }}
),

timeframes as (
    select
        timeframe,
        {{ timeframe_minutes('timeframe') }} as bar_minutes
    from (select unnest({{ var('timeframes') }}) as timeframe)
),

-- A snapshot at t belongs to each bar whose [open, close] holds t: the bar it falls in and, when
-- t is a bar boundary, also the bar that closes at t. Bucketing (instead of an as-of join over
-- every bar) keeps this in proportion to the snapshots, not the bars.
snapshot_bars as (
    select
        order_book.*,
        timeframes.timeframe,
        time_bucket(to_minutes(timeframes.bar_minutes), order_book.snapshot_at) as ts,
        to_minutes(timeframes.bar_minutes) as bar_length
    from order_book
    cross join timeframes
),

book_in_bar as (
    select
        venue,
        symbol,
        timeframe,
        ts,
        arg_max(order_book_imbalance, snapshot_at) as order_book_imbalance
    from (
        select * from snapshot_bars
        union all
        select * replace (ts - bar_length as ts) from snapshot_bars where ts = snapshot_at
    )
    group by venue, symbol, timeframe, ts
),

-- A settlement at t belongs to the bar that closes at or after t: (open, close].
settled_in_bar as (
    select
        funding.venue,
        funding.symbol,
        timeframes.timeframe,
        time_bucket(
            to_minutes(timeframes.bar_minutes), funding.settled_at - interval 1 microsecond
        ) as ts,
        sum(funding.funding_rate) as funding_rate_settled,
        count(*) as funding_settlements
    from funding
    cross join timeframes
    group by all
),

with_funding as (
    select
        bars.*,
        funding.settled_at as last_settled_at,
        funding.funding_rate as last_funding_rate,
        funding.funding_rate_8h as last_funding_rate_8h,
        funding.funding_zscore,
        funding.funding_carry_annualized,
        funding.interval_hours as funding_interval_hours
    from bars
    asof left join funding
        on bars.venue = funding.venue
        and bars.symbol = funding.symbol
        and bars.close_ts >= funding.settled_at
)

select
    with_funding.*,
    book_in_bar.order_book_imbalance,
    coalesce(settled_in_bar.funding_rate_settled, 0.0) as funding_rate_settled,
    coalesce(settled_in_bar.funding_settlements, 0) as funding_settlements
from with_funding
left join book_in_bar
    on with_funding.venue = book_in_bar.venue
    and with_funding.symbol = book_in_bar.symbol
    and with_funding.timeframe = book_in_bar.timeframe
    and with_funding.ts = book_in_bar.ts
left join settled_in_bar
    on with_funding.venue = settled_in_bar.venue
    and with_funding.symbol = settled_in_bar.symbol
    and with_funding.timeframe = settled_in_bar.timeframe
    and with_funding.ts = settled_in_bar.ts
