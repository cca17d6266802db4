

def test_closing_table_has_the_same_columns_for_every_chapter_and_one_row_per_part():
    from diffusion_study.book.ledger import CLOSING_COLUMNS, closing_rows, closing_table

    claims = {"N1": {"verdict": "mixed", "parts": [
                  {"setting": "T = 10", "verdict": "supported", "effect": "-0.1 +- 0.02 bits/dim",
                   "interval": [-0.12, -0.08], "mde": 0.03, "margin": "< -0.02 bits/dim"},
                  {"setting": "T = 1000", "verdict": "inconclusive", "effect": "0.0 +- 0.2", "interval": [-0.2, 0.2]}]},
              "L1": {"verdict": "verified identity", "effect": "max |z| 1.2"}}
    rows = closing_rows(claims)
    assert [r[:3] for r in rows] == [["N1", "T = 10", "supported"], ["N1", "T = 1000", "inconclusive"],
                                     ["L1", "all", "verified identity"]]
    assert all(len(r) == len(CLOSING_COLUMNS) for r in rows)
    assert "±" in rows[0][3] and rows[1][5] == "—" and rows[2][4] == "—"
    assert "<th>Verdict</th>" in closing_table(claims)._repr_html_()
