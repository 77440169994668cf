{#-
Which bars a build computes. A full build computes every bar. An incremental build recomputes
the bars after each (venue, symbol, timeframe) watermark of the existing table, or, when the
`window_start`/`window_end` vars are set, the bars whose open time lies in that window.
Inputs are scanned from `lookback_bars` of the longest timeframe before the first computed bar,
so every rolling window of a computed bar is complete and equal to a full build's.
-#}

{#- SQL literal of the first input timestamp to scan, or none to scan everything. -#}
{% macro scan_start(lookback_bars) -%}
    {%- set lookback_minutes = (lookback_bars + 1) * max_timeframe_minutes() -%}
    {%- if var("window_start") -%}
        {{ return("timestamp '" ~ var("window_start") ~ "' - interval " ~ lookback_minutes ~ " minute") }}
    {%- elif is_incremental() and execute -%}
        {%- set query -%}
            select min(watermark)::varchar from (
                select max(ts) as watermark from {{ this }} group by venue, symbol, timeframe
            )
        {%- endset -%}
        {%- set watermark = run_query(query).columns[0].values()[0] -%}
        {%- if watermark -%}
            {{ return("timestamp '" ~ watermark ~ "' - interval " ~ lookback_minutes ~ " minute") }}
        {%- endif -%}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#- WHERE condition keeping the bars this build writes (rows joined to `watermarks`). -#}
{% macro bars_to_write(ts_column) -%}
    {%- if var("window_start") -%}
        {{ ts_column }} >= timestamp '{{ var("window_start") }}'
    {%- elif is_incremental() -%}
        {{ ts_column }} > coalesce(watermarks.watermark, timestamp '-infinity')
    {%- else -%}
        true
    {%- endif %}
    {%- if var("window_end") %} and {{ ts_column }} < timestamp '{{ var("window_end") }}'{% endif -%}
{%- endmacro %}

{#- A relation of (venue, symbol, timeframe, watermark) for `bars_to_write` to join. -#}
{% macro watermarks() -%}
    {%- if is_incremental() -%}
        select venue, symbol, timeframe, max(ts) as watermark from {{ this }} group by all
    {%- else -%}
        select
            null::varchar as venue,
            null::varchar as symbol,
            null::varchar as timeframe,
            null::timestamp as watermark
        where false
    {%- endif -%}
{%- endmacro %}
