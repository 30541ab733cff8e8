"""Quality-assessment figures of a forced-source dataset (PNG, matplotlib's Agg renderer).

``write_qa(dataset, out_dir, truth=...)`` writes the figure set; the small functions of
:mod:`colphot.qa.figures` return the arrays each figure draws.
"""

from __future__ import annotations

from colphot.qa.figures import write_qa

__all__ = ["write_qa"]
