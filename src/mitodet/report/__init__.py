"""Clinical read-out (counts, hotspot, Nottingham score), output writers and visualisations."""
