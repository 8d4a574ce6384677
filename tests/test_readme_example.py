"""micrograd's README example, unchanged except for the import."""


def test_readme_example(engine):
    Value = engine.Value
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    assert f"{g.data:.4f}" == "24.7041"  # the outcome of this forward pass
    g.backward()
    assert f"{a.grad:.4f}" == "138.8338"  # i.e. the numerical value of dg/da
    assert f"{b.grad:.4f}" == "645.5773"  # i.e. the numerical value of dg/db

    # Beyond micrograd's 4 decimals: every gradient derived by hand.
    # c = 4(a + b) + 3 - a = 3a + 4b + 3;  before the relus d = 3(ab + b^3),
    # then d = 4 * 3(ab + b^3) + relu(b - a) (relu(b + a) is relu(-2) = 0).
    # e = c - d;  g = e^2/2 + 10/e^2;  dg/de = e - 20/e^3.
    av, bv = -4.0, 2.0
    e_val = (3 * av + 4 * bv + 3) - (12 * (av * bv + bv**3) + (bv - av))
    dg_de = e_val - 20 / e_val**3
    de_da = 3 - (12 * bv - 1)
    de_db = 4 - (12 * (av + 3 * bv**2) + 1)
    assert abs(g.data - (e_val**2 / 2 + 10 / e_val**2)) <= 1e-12 * abs(g.data)
    assert abs(a.grad - dg_de * de_da) <= 1e-12 * abs(a.grad)
    assert abs(b.grad - dg_de * de_db) <= 1e-12 * abs(b.grad)
