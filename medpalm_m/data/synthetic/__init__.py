"""Synthetic MultiMedBench-mini: one procedurally generated analog per MultiMedBench task.

Importing this package registers every synthetic task (see `medpalm_m.data.tasks`).
"""
