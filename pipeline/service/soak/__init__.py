"""`pipeline soak`: the real pipeline run for a long time, watched for leaks and drift.

Owns the soak and only that: the run, sampled on the run driver's tick (`soak_run`), the
judge of its samples against the reliability targets (`judgement`, pure) and the files it
writes (`result_files`: csv, json, png).
"""
