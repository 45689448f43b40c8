"""Judge: turns measured records into verdicts. Takes a ProbeResult (or a run's history) and gives
findings and layer statuses: the rule registry, the repository's policy, baselines. Torch-free.
"""
