"""The serving spec: the wire contract (`contract`) and the steps and ensembles wired from it (`topology`).

Everything that writes, serves, calls or benchmarks the model repository reads these modules;
nothing else names a tensor or wires a step. Plain data: no torch, no numpy, no Triton.
"""
