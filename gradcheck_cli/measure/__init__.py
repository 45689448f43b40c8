"""Measure: the torch passes. Takes a LoadedModel and an AnalyzeConfig, builds the batches, trains
when asked, runs the hooked forward/backward passes and gives a ProbeResult (records only).
"""
