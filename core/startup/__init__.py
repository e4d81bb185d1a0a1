"""Process start-up: activation from the environment, the `pipetrace run` launcher and sitecustomize."""
