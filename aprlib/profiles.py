"""Run sizes of every experiment: ``smoke`` (CI, seconds), ``book`` (the published book) and
``paper`` (the thesis's exact settings). Notebooks look their settings up here."""
from __future__ import annotations

PROFILES = {
    # Fig 4.1 / 4.2: APR of synthetic images (thesis 4.1.2).
    "apr_synthetic": {
        "smoke": {"n_images": 12, "e_values": [0.1, 0.4, 0.8], "n_crosscheck": 4},
        "book": {"n_images": 1000, "e_values": [round(0.1 * i, 1) for i in range(1, 11)], "n_crosscheck": 200},
        "paper": {"n_images": 1000, "e_values": [round(0.1 * i, 1) for i in range(1, 11)], "n_crosscheck": 1000},
    },
}


def profile_settings(experiment: str, profile: str) -> dict:
    """Settings of ``experiment`` at ``profile``; ValueError names the valid choices."""
    if experiment not in PROFILES:
        raise ValueError(f"unknown experiment {experiment!r}; known: {sorted(PROFILES)}")
    table = PROFILES[experiment]
    if profile not in table:
        raise ValueError(f"unknown profile {profile!r} for {experiment}; choose one of {sorted(table)}")
    return dict(table[profile])
