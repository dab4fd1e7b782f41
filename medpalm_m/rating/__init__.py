"""The radiologist evaluation of generated chest X-ray reports (Med-PaLM M §6.3, Table A.8).

`selection` picks the paper's cases and writes a study file (`study`); `store` keeps raters,
their assignments (`assignment`) and their answers in SQLite; `app` is the blinded rating web
app; `analysis` turns the answers into the paper's tables and `chart` into a figure. The command
line is `python -m medpalm_m.rate`.
"""
