{#- Minutes in a bar of each timeframe the warehouse stores: ingestion.universe.TIMEFRAMES
    (tests/ingestion/test_universe.py keeps the two equal). -#}
{% macro timeframe_minutes_map() -%}
    {{ return({"5m": 5, "10m": 10, "30m": 30, "1h": 60, "1d": 1440}) }}
{%- endmacro %}

{#- SQL expression: the bar length in minutes of the timeframe column (NULL if unsupported). -#}
{% macro timeframe_minutes(column) -%}
    case {{ column }}
    {%- for name, minutes in timeframe_minutes_map().items() %}
        when '{{ name }}' then {{ minutes }}
    {%- endfor %}
    end
{%- endmacro %}

{#- The longest bar among the configured timeframes, in minutes. -#}
{% macro max_timeframe_minutes() -%}
    {%- set minutes = [] -%}
    {%- for tf in var("timeframes") -%}
        {%- do minutes.append(timeframe_minutes_map()[tf]) -%}
    {%- endfor -%}
    {{ return(minutes | max) }}
{%- endmacro %}

{#- A relation of the `timeframes` var: (timeframe, bar_minutes), one row each. -#}
{% macro configured_timeframes() -%}
    select timeframe, {{ timeframe_minutes('timeframe') }} as bar_minutes
    from (select unnest({{ var('timeframes') }}) as timeframe)
{%- endmacro %}
