"""Review app v2 (issue 11): class order and keys, unsure and tags, reviewers, per-class view,
signal percentiles, the map's projection and selections -- without a browser."""

from __future__ import annotations

from labelaudit.webapp import charts


def test_histogram_axis_tops_at_or_above_the_tallest_bar():
    bins = [{"lo": 0.0, "hi": 0.5, "n_flagged": 0, "n_unflagged": 79},
            {"lo": 0.5, "hi": 1.0, "n_flagged": 10, "n_unflagged": 50}]
    h = charts.histogram(bins)
    assert h["yticks"][-1]["text"] == "80"  # not 60: the 79-bar would be clipped
    tallest, other = h["bars"][0]["hu"], h["bars"][1]["hu"] + h["bars"][1]["hf"]
    assert tallest <= h["plot_h"] and tallest > other  # the tallest bin looks tallest
    assert [t["text"] for t in charts.histogram([{"lo": 0, "hi": 1, "n_flagged": 1, "n_unflagged": 0}])["yticks"]] == ["0", "1"]
