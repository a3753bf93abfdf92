from serve_app.builders import bbc


def test_split_is_fixed_disjoint_and_covers_every_topic():
    articles = bbc.load_articles()
    assert len(articles) == 2225
    train, held_out = bbc.split(articles)
    assert len(train) + len(held_out) == 2225
    assert not {a.id for a in train} & {a.id for a in held_out}
    assert 0.15 < len(held_out) / len(articles) < 0.25
    assert {a.label for a in held_out} == set(bbc.labels_of(articles)) == {
        "business", "entertainment", "politics", "sports", "tech"}
    # The rule depends on the id alone: recomputing it gives the same membership.
    assert all(bbc.is_held_out(a.id) for a in held_out)
    assert all(a.text.startswith(a.headline) for a in articles[:50])
