"""The one percentile helper (nearest rank): every reported figure is a latency some request had."""

import pytest

from serve_app.bench.stats import percentile


def test_nearest_rank_percentiles():
    values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6]
    assert percentile(values, 50) == 5 and percentile(values, 90) == 9 and percentile(values, 99) == 10
    assert percentile(values, 0) == 1 and percentile(values, 100) == 10
    assert percentile([7.5], 99) == 7.5 and percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)
