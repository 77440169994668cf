{#- Basis of the perp over spot, (P_perp - P_spot) / P_spot: one definition for the feature and
    for its cross-venue dispersion. -#}
{% macro basis(perp_close, spot_close) -%}
    ({{ perp_close }} - {{ spot_close }}) / {{ spot_close }}
{%- endmacro %}
