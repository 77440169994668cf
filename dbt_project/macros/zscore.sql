{#- (value - mean) / std; 0 when the window is constant (std 0 up to float noise), since the
    value then equals the mean. A NULL std (window not yet full) stays NULL. -#}
{% macro zscore(value, mean, std) -%}
    case
        when {{ std }} > 1e-9 * abs({{ mean }}) + 1e-15 then ({{ value }} - {{ mean }}) / {{ std }}
        when {{ std }} is not null then 0.0
    end
{%- endmacro %}
