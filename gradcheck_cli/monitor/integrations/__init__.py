"""Callbacks for the training frameworks people use, each an optional extra.

    pip install 'gradcheck-cli[lightning]'      gradcheck_cli.monitor.integrations.lightning.GradcheckCallback
    pip install 'gradcheck-cli[transformers]'   gradcheck_cli.monitor.integrations.transformers.GradcheckCallback

Both drive a GradientMonitor from the framework's hooks. `import gradcheck_cli` never imports
these modules (nor the frameworks); importing one imports its framework.
"""
