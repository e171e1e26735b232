"""discovery: optional servers that find peer kernels.

LLDP frames and agent, neighbor table, probe, beacon and the candidate cache. Imports
``pykernel`` only; reports through callbacks, never into control's internals.
"""
