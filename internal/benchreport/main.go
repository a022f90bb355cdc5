// Command benchreport writes BENCHMARKS.md from the output of `go test
// -bench` (make bench): the machine, the servers, and for every figure its
// median, range and number of samples, next to the baseline it is compared
// with. Several output files pool their samples (several make bench runs).
//
//	go run ./internal/benchreport -servers servers.txt -o BENCHMARKS.md bench.txt...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	servers := flag.String("servers", "", "file with the output of the stack's status (server versions)")
	out := flag.String("o", "BENCHMARKS.md", "file to write")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: give one or more files with the output of go test -bench")
		os.Exit(2)
	}
	runs, err := readAll(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	if len(runs) == 0 {
		fmt.Fprintf(os.Stderr, "benchreport: no benchmark result line in %s\n", strings.Join(flag.Args(), ", "))
		os.Exit(1)
	}
	var status string
	if *servers != "" {
		b, err := os.ReadFile(*servers)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		status = strings.TrimSpace(string(b))
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	write(f, runs, machine(), status, len(flag.Args()))
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// samples holds every value of every metric of one benchmark.
type samples struct {
	name   string
	order  []string // metric units, as first seen
	values map[string][]float64
}

// readAll parses benchmark result lines ("BenchmarkX-2  1  0.5 unit ..."),
// in the order the benchmarks first appear.
func readAll(paths []string) ([]*samples, error) {
	by := map[string]*samples{}
	var order []*samples
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		err = parse(f, func(name, unit string, v float64) {
			s := by[name]
			if s == nil {
				s = &samples{name: name, values: map[string][]float64{}}
				by[name] = s
				order = append(order, s)
			}
			if _, ok := s.values[unit]; !ok {
				s.order = append(s.order, unit)
			}
			s.values[unit] = append(s.values[unit], v)
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return order, nil
}

func parse(r io.Reader, add func(name, unit string, v float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with the name
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%q: %q is not a number", sc.Text(), f[i])
			}
			if f[i+1] == "ns/op" {
				continue // setup and checks: meaningless here
			}
			add(name, f[i+1], v)
		}
	}
	return sc.Err()
}

func median(v []float64) float64 {
	s := append([]float64{}, v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func span(v []float64) (lo, hi float64) {
	lo, hi = v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// machine describes where the benchmarks ran.
func machine() []string {
	lines := []string{fmt.Sprintf("CPUs (`nproc`): %s", strings.TrimSpace(cmdOut("nproc", strconv.Itoa(runtime.NumCPU()))))}
	if m := procField("/proc/cpuinfo", "model name"); m != "" {
		lines = append(lines, "CPU: "+m)
	}
	if m := procField("/proc/meminfo", "MemTotal"); m != "" {
		if kb, err := strconv.ParseFloat(strings.Fields(m)[0], 64); err == nil {
			lines = append(lines, fmt.Sprintf("Memory: %.1f GiB", kb/1024/1024))
		}
	}
	lines = append(lines, "Kernel: "+strings.TrimSpace(cmdOut("uname", "?", "-sr")), "Go: "+runtime.Version())
	return lines
}

func cmdOut(name, fallback string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return fallback
	}
	return string(b)
}

func procField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func write(w io.Writer, runs []*samples, mach []string, status string, files int) {
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `make bench` (`internal/benchreport`) on %s from %d `go test -bench` output file(s). "+
		"What each benchmark does and why: README, Benchmarks, and the comments in `internal/e2e/bench*_test.go`. "+
		"Every benchmark fails when a target is not exactly the aggregate of its source, so every figure below comes from exact results.\n\n",
		time.Now().UTC().Format("2006-01-02"), files)
	fmt.Fprintf(w, "## Machine\n\n")
	for _, l := range mach {
		fmt.Fprintf(w, "- %s\n", l)
	}
	fmt.Fprintf(w, "\nEvery ClickHouse server of the stack, ZooKeeper and PostgreSQL share these cores with the benchmarks, and at times "+
		"other engineers' tests run on them too. Seconds move from run to run, ratios less: read the medians.\n\n")
	if status != "" {
		fmt.Fprintf(w, "Servers (`make status`):\n\n```\n%s\n```\n\n", status)
	}
	fmt.Fprintf(w, "## Figures\n\nMedian and range over the samples (one per iteration; `make bench` runs `-count 3`).\n")
	for _, s := range runs {
		doc := docs[s.name]
		fmt.Fprintf(w, "\n### %s\n\n", s.name)
		if doc.text != "" {
			fmt.Fprintf(w, "%s\n\n", doc.text)
		}
		fmt.Fprintf(w, "| figure | compared with | median | range | samples | target |\n|---|---|---|---|---|---|\n")
		units := append([]string{}, s.order...)
		// Ratios first: they are the figures; seconds and counts give scale.
		sort.SliceStable(units, func(i, j int) bool { return isRatio(units[i]) && !isRatio(units[j]) })
		for _, unit := range units {
			v := s.values[unit]
			lo, hi := span(v)
			fd := doc.figure(unit)
			fmt.Fprintf(w, "| `%s` %s | %s | %s | %s-%s | %d | %s |\n", unit, fd.what, dash(fd.baseline),
				num(median(v), unit), num(lo, unit), num(hi, unit), len(v), dash(fd.target))
		}
	}
	writeOptimisations(w, runs)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func isRatio(unit string) bool {
	return strings.Contains(unit, "/") && !strings.HasPrefix(unit, "statements")
}

// num prints a value in its unit's terms: ratios as 1.23x, seconds as
// 1.23 s, counts as integers.
func num(v float64, unit string) string {
	switch {
	case isRatio(unit):
		return fmt.Sprintf("%.2fx", v)
	case strings.HasSuffix(unit, "-s"):
		return fmt.Sprintf("%.2f s", v)
	case strings.HasSuffix(unit, "-ms"):
		return fmt.Sprintf("%.1f ms", v)
	case strings.HasSuffix(unit, "-MB"):
		return fmt.Sprintf("%.1f MB", v)
	case strings.HasSuffix(unit, "-ns-per-row"):
		return fmt.Sprintf("%.1f ns", v)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
