"""Pure figure builders for the dashboard: DataFrame in → plotly Figure out (no Streamlit).

colors (one colour per method / teacher), runs (selecting runs in view), recovery, teachers,
posteriors (EDL Dirichlets), calibration, compare, export (CSV / HTML / PNG / SVG bytes).
"""
