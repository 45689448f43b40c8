"""Config: from argv and config files to one AnalyzeConfig per target. The option table, config-file
reading and checks, preflight checks across options, --show-config. Torch-free.
"""
