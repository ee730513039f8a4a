"""PixelHub's conformance inputs: the SearchParameter set, profiles, and the validator harness.

Data only: nothing here imports ``hub`` or ``adapters``.
"""
