"""The paper's MultiMedBench training mixture [Tu et al. 2023, Table A.1].

CBIS-DDSM's 1.56% is split evenly between its mass and calcification tasks; PubMedQA is
evaluation-only (not in the mixture). Task names are those of the real dataset builders.
"""

MIXTURE = {
    "mimic_cxr_report": 59.90,
    "mimic_cxr_classification": 11.98,
    "medmcqa": 6.25,
    "pad_ufes_20": 6.25,
    "medqa": 3.13,
    "mimic_iii": 3.13,
    "slake": 2.64,
    "path_vqa": 1.90,
    "vindr_mammo": 1.56,
    "cbis_ddsm_mass": 0.78,
    "cbis_ddsm_calc": 0.78,
    "precision_fda": 1.56,
    "vqa_rad": 0.15,
}
