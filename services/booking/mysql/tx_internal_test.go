package mysql

import (
	"slices"
	"testing"
)

func TestCoalesce(t *testing.T) {
	checked := func(int64) error { return nil }
	a := func(q string, args ...any) stmt { return stmt{query: q, args: args} }
	tests := []struct {
		name string
		in   []stmt
		want []stmt
	}{
		{
			name: "one item's writes stay as they are",
			in: []stmt{
				{query: "START TRANSACTION"},
				a("INSERT INTO b (id) VALUES (?)", 1),
				a("INSERT INTO h (b, at) VALUES (?, NOW(6))", 1),
			},
			want: []stmt{
				{query: "START TRANSACTION"},
				a("INSERT INTO b (id) VALUES (?)", 1),
				a("INSERT INTO h (b, at) VALUES (?, NOW(6))", 1),
			},
		},
		{
			name: "items of one shape become one INSERT per table, rows in order",
			in: []stmt{
				{query: "INSERT INTO k (k, s) VALUES (?, 'done')", args: []any{"k2"}, claim: true},
				{query: "INSERT INTO k (k, s) VALUES (?, 'done')", args: []any{"k1"}, claim: true},
				a("INSERT INTO b (id) VALUES (?)", 1),
				a("INSERT INTO h (b, at) VALUES (?, NOW(6))", 1),
				a("INSERT INTO b (id) VALUES (?)", 2),
				a("INSERT INTO h (b, at) VALUES (?, NOW(6))", 2),
			},
			want: []stmt{
				{query: "INSERT INTO k (k, s) VALUES (?, 'done'), (?, 'done')", args: []any{"k2", "k1"}, claim: true},
				a("INSERT INTO b (id) VALUES (?), (?)", 1, 2),
				a("INSERT INTO h (b, at) VALUES (?, NOW(6)), (?, NOW(6))", 1, 2),
			},
		},
		{
			name: "another statement ends the run",
			in: []stmt{
				a("INSERT INTO b (id) VALUES (?)", 1),
				a("UPDATE b SET v = 1"),
				a("INSERT INTO b (id) VALUES (?)", 2),
				a("INSERT INTO b (id) VALUES (?)", 3),
			},
			want: []stmt{
				a("INSERT INTO b (id) VALUES (?)", 1),
				a("UPDATE b SET v = 1"),
				a("INSERT INTO b (id) VALUES (?), (?)", 2, 3),
			},
		},
		{
			name: "checked, multi-row and upserting INSERTs are left alone",
			in: []stmt{
				{query: "INSERT INTO i (m) VALUES (?)", args: []any{"m1"}, check: checked},
				{query: "INSERT INTO i (m) VALUES (?)", args: []any{"m2"}, check: checked},
				a("INSERT INTO o (m) VALUES (?), (?)", 1, 2),
				a("INSERT INTO o (m) VALUES (?), (?)", 3, 4),
				a("INSERT INTO u (m) VALUES (?) ON DUPLICATE KEY UPDATE m = m", 5),
				a("INSERT INTO u (m) VALUES (?) ON DUPLICATE KEY UPDATE m = m", 6),
			},
			want: nil, // the same
		},
		{
			name: "a parenthesis in a string is text",
			in: []stmt{
				a("INSERT INTO q (m) VALUES ('a)b')", 7),
				a("INSERT INTO q (m) VALUES ('a)b')", 8),
			},
			want: []stmt{a("INSERT INTO q (m) VALUES ('a)b'), ('a)b')", 7, 8)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				tc.want = tc.in
			}
			in := slices.Clone(tc.in)
			got := coalesce(in)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d statements, want %d: %v", len(got), len(tc.want), got)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.query != w.query || !slices.Equal(g.args, w.args) || g.claim != w.claim || (g.check == nil) != (w.check == nil) {
					t.Errorf("statement %d:\n got %q %v claim=%v\nwant %q %v claim=%v", i, g.query, g.args, g.claim, w.query, w.args, w.claim)
				}
			}
			// The input's statements are not changed: a failed packet's statements are gone,
			// but a caller holding them must not see merged text.
			for i := range in {
				if in[i].query != tc.in[i].query || !slices.Equal(in[i].args, tc.in[i].args) {
					t.Errorf("input statement %d changed to %q %v", i, in[i].query, in[i].args)
				}
			}
		})
	}
}
