"""Records: the frozen, torch-free dataclasses that cross a stage boundary (layer statistics,
probe results, findings, reports, histories, outcomes, comparisons, trained-state records), the
errors every stage raises, and the words reports use. Imports nothing of gradcheck but itself.
"""
