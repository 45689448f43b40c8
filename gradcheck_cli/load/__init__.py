"""Load: from a TargetRef to a live model. Takes the parsed TARGET (file, module, builtin, call form)
and gives a LoadedModel; also reads checkpoint files for --weights without running their code.
"""
