"""The main job and the local Airflow: ``make demo`` (:mod:`demo.replay`) and ``make airflow-ui`` (:mod:`demo.standalone`).

Kept out of ``plugins/``: Airflow imports every module there in every component.
"""
