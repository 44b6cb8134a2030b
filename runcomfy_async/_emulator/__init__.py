"""The RunComfy Model API emulator; its public face is :mod:`runcomfy_async.testing`."""
