"""Monitor: gradcheck inside a user's training loop. GradientMonitor, the trainer callbacks
(integrations/) and where measured steps go (sinks/).
"""
