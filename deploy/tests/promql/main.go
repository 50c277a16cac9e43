// Command promql parses PromQL expressions with Prometheus' own parser, for
// deploy/tests/test_chart.py: it reads a JSON array of expressions on stdin and writes, for
// each, the parse error (or null), the metric names its selectors name, and the label names its
// matchers and groupings use.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/prometheus/promql/parser"
)

// Result is what one expression uses, or why it does not parse.
type Result struct {
	Error   *string  `json:"error"`
	Metrics []string `json:"metrics"`
	Labels  []string `json:"labels"`
}

func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func inspect(p parser.Parser, input string) Result {
	expr, err := p.ParseExpr(input)
	if err != nil {
		msg := err.Error()
		return Result{Error: &msg, Metrics: []string{}, Labels: []string{}}
	}
	metrics, labels := map[string]bool{}, map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				if m.Name == "__name__" {
					metrics[m.Value] = true
				} else {
					labels[m.Name] = true
				}
			}
		case *parser.AggregateExpr:
			for _, l := range n.Grouping {
				labels[l] = true
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				for _, l := range n.VectorMatching.MatchingLabels {
					labels[l] = true
				}
			}
		}
		return nil
	})
	return Result{Metrics: keys(metrics), Labels: keys(labels)}
}

func main() {
	in, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		fmt.Fprintln(os.Stderr, "promql: reading stdin:", err)
		os.Exit(2)
	}
	var exprs []string
	if err := json.Unmarshal(in, &exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promql: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	results := make([]Result, 0, len(exprs))
	for _, e := range exprs {
		results = append(results, inspect(p, e))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "promql: writing stdout:", err)
		os.Exit(2)
	}
}
