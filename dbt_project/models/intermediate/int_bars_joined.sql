-- Each aligned bar with the latest order-book snapshot inside [open, close] (NULL if none).
-- Funding is placed on the bars in fct_features, where it is carried through the window pass.
with bars as (
    select * from {{ ref('int_bars_aligned') }}
),

order_book as (
    select * from {{ ref('int_order_book_imbalance') }}
),

timeframes as (
    {{ configured_timeframes() }}
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
)

select
    bars.*,
    book_in_bar.order_book_imbalance
from bars
left join book_in_bar
    on bars.venue = book_in_bar.venue
    and bars.symbol = book_in_bar.symbol
    and bars.timeframe = book_in_bar.timeframe
    and bars.ts = book_in_bar.ts
