"""Hardware-in-the-loop: stream scenarios into a running node over DDS, inject faults, check every frame."""
