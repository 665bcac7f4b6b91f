package main

// A hand-written SVG chart: three panels of grouped bars (requests per
// second, proxy CPU per request and p99 latency), one group per scenario,
// one colour per proxy.
// No external tools, so that any machine that runs the harness can draw it.

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// Chart geometry, in SVG user units (pixels).
const (
	chartWidth   = 960 // at least; wider when the bars would be narrower than minBarWidth
	minBarWidth  = 30  // room for a bar's label ("45.8k")
	marginLeft   = 80
	marginRight  = 20
	headerHeight = 70  // title and legend
	panelHeight  = 200 // bar area of one panel
	panelGap     = 90  // panel title above, scenario labels below
	footerHeight = 10  // below the last panel's labels
)

// proxyColours gives each known proxy a fixed colour, so charts of
// different runs compare at a glance; others take fallbackColours in turn.
var (
	proxyColours = map[string]string{
		"sluice": "#d95f02", "nginx": "#1b9e77", "haproxy": "#7570b3",
		"sluice-log": "#66a61e", "sluice-lr": "#e6ab02", "sluice-ewma": "#e7298a", "go-std": "#a6761d",
	}
	fallbackColours = []string{"#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"}
)

// panel is one bar chart of the figure.
type panel struct {
	title  string
	value  func(result) float64
	format func(float64) string // bar labels
}

// chart renders r's results as an SVG document.
func chart(r *report) string {
	panels := []panel{
		{title: "Requests per second (higher is better)", value: func(x result) float64 { return x.RPS }, format: func(v float64) string {
			if v < 1000 {
				return fmt.Sprintf("%.0f", v)
			}
			return fmtCompact(v)
		}},
		{title: "Proxy CPU time per request, µs (lower is better)", value: func(x result) float64 { return x.CPUPerRequestUS }, format: func(v float64) string { return fmt.Sprintf("%.1f", v) }},
		{title: "p99 latency, ms (lower is better)", value: func(x result) float64 { return x.P99ms }, format: func(v float64) string {
			if v < 10 {
				return fmt.Sprintf("%.1f", v)
			}
			return fmt.Sprintf("%.0f", v)
		}},
	}
	height := headerHeight + len(panels)*(panelHeight+panelGap) + footerHeight
	width := chartWidthFor(r)

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	// The title and legend name the proxies that ran (sluice-log, for
	// one, runs in healthy_get only).
	var shown []string
	for _, p := range r.Proxies {
		if slices.ContainsFunc(r.Results, func(x result) bool { return x.Proxy == p }) {
			shown = append(shown, p)
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n",
		marginLeft, esc(fmt.Sprintf("%s, %s (median of %d × %s)", strings.Join(shown, " vs "), r.Started.Format("2006-01-02"), r.Reps, r.Duration)))

	// Legend: one swatch per proxy.
	x := marginLeft
	for _, p := range shown {
		fmt.Fprintf(&b, `<rect x="%d" y="38" width="14" height="14" fill="%s"/>`, x, colour(p, slices.Index(r.Proxies, p)))
		fmt.Fprintf(&b, `<text x="%d" y="50" font-size="13">%s</text>`+"\n", x+20, esc(p))
		x += 40 + 8*len(p)
	}

	for i, pn := range panels {
		top := headerHeight + i*(panelHeight+panelGap) + 30
		drawPanel(&b, r, pn, top, width)
	}
	for _, res := range r.Results {
		if res.Errors > 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#b00000">%s</text>`+"\n", marginLeft, height-8,
				esc("* the run had errors (non-2xx/3xx responses or socket errors): see results.md"))
			break
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// scenarioProxies returns the proxies, in legend order, that have a result
// in scenario sc.
func scenarioProxies(r *report, sc string) []string {
	var ps []string
	for _, p := range r.Proxies {
		if _, ok := findResult(r, sc, p); ok {
			ps = append(ps, p)
		}
	}
	return ps
}

// maxSlots returns the most proxies any one scenario has results for: the
// bars of a group.
func maxSlots(r *report) int {
	n := 1
	for _, sc := range r.Scenarios {
		n = max(n, len(scenarioProxies(r, sc.Name)))
	}
	return n
}

// chartWidthFor returns the chart's width: chartWidth, or more when the
// bars would be narrower than minBarWidth.
func chartWidthFor(r *report) int {
	bars := max(1, len(r.Scenarios)) * maxSlots(r)
	return max(chartWidth, marginLeft+marginRight+int(math.Ceil(float64(bars*minBarWidth)/0.8)))
}

// drawPanel draws one panel whose bar area starts at y = top, in a chart
// width wide. A scenario's group has a bar for each proxy that ran it,
// centred, every bar as wide.
func drawPanel(b *strings.Builder, r *report, pn panel, top, width int) {
	plotW := float64(width - marginLeft - marginRight)
	bottom := float64(top + panelHeight)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", marginLeft, top-12, esc(pn.title))

	maxV := 0.0
	for _, res := range r.Results {
		maxV = math.Max(maxV, pn.value(res))
	}
	step, top2 := niceScale(maxV)
	yOf := func(v float64) float64 { return bottom - v/top2*panelHeight }

	// Grid lines and y-axis labels.
	for v := 0.0; v <= top2*1.0001; v += step {
		y := yOf(v)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`, marginLeft, y, width-marginRight, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#555555">%s</text>`+"\n", marginLeft-6, y+4, esc(fmtCompact(v)))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333333"/>`+"\n", marginLeft, bottom, width-marginRight, bottom)

	// One group per scenario, one bar per proxy that ran it.
	n := max(1, len(r.Scenarios))
	groupW := plotW / float64(n)
	barW := groupW * 0.8 / float64(maxSlots(r))
	for si, sc := range r.Scenarios {
		gx := float64(marginLeft) + float64(si)*groupW
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">%s</text>`+"\n", gx+groupW/2, bottom+18, esc(sc.Name))
		ps := scenarioProxies(r, sc.Name)
		x0 := gx + (groupW-float64(len(ps))*barW)/2
		for i, p := range ps {
			res, _ := findResult(r, sc.Name, p)
			pi := slices.Index(r.Proxies, p)
			v := pn.value(res)
			x := x0 + float64(i)*barW
			y := yOf(v)
			label, fill := pn.format(v), "#333333"
			if res.Errors > 0 {
				label, fill = label+"*", "#b00000"
			}
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`,
				x+1, y, barW-2, bottom-y, colour(p, pi), esc(fmt.Sprintf("%s %s: %s", sc.Name, p, label)))
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle" fill="%s">%s</text>`+"\n", x+barW/2, y-4, fill, esc(label))
		}
	}
}

// findResult returns the result of proxy p in scenario sc.
func findResult(r *report, sc, p string) (result, bool) {
	for _, res := range r.Results {
		if res.Scenario == sc && res.Proxy == p {
			return res, true
		}
	}
	return result{}, false
}

// niceScale returns a round tick step (1, 2 or 5 times a power of ten) and
// the axis maximum, a multiple of it at or above maxV, for about five ticks.
func niceScale(maxV float64) (step, top float64) {
	if maxV <= 0 {
		return 1, 5
	}
	raw := maxV / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		step = mag
	case f <= 2:
		step = 2 * mag
	case f <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return step, math.Ceil(maxV/step) * step
}

// colour returns the colour of proxy p, the i-th in the legend.
func colour(p string, i int) string {
	if c, ok := proxyColours[p]; ok {
		return c
	}
	return fallbackColours[i%len(fallbackColours)]
}

// fmtCompact formats a number briefly: 950, 41.2k, 1.23M, 0.5.
func fmtCompact(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trimZeros(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e4:
		return trimZeros(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 1e3:
		return trimZeros(fmt.Sprintf("%.2f", v/1e3)) + "k"
	case a == math.Trunc(a):
		return fmt.Sprintf("%.0f", v)
	default:
		return trimZeros(fmt.Sprintf("%.2f", v))
	}
}

// trimZeros drops trailing zeros after a decimal point: "1.50" -> "1.5".
func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// esc escapes text for SVG (XML) content and attribute values.
func esc(s string) string { return html.EscapeString(s) }
