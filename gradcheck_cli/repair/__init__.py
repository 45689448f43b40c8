"""--try-fixes: apply a finding's suggested fixes to deep copies of the model and measure again.

One module per transform (recurrent, activation, normalization, residual, reinit, clip),
`runner` tries them for each error finding, `measure` re-runs the pipeline's probe stages
on a copy, and `records` holds the torch-free results that go into the report.
"""
