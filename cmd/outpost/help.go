package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/alecthomas/kingpin/v2"

	"github.com/outpost-migrate/outpost/batch/config"
)

// usageTemplate is kingpin's default with the flags grouped (the command's
// own, the stores it works on, output) and examples.
const usageTemplate = `{{define "FormatCommand" -}}
{{if .FlagSummary}} {{.FlagSummary}}{{end -}}
{{range .Args}}{{if not .Hidden}} {{if not .Required}}[{{end}}{{if .PlaceHolder}}{{.PlaceHolder}}{{else}}<{{.Name}}>{{end}}{{if not .Required}}]{{end}}{{end}}{{end -}}
{{end -}}
{{define "FormatCommands" -}}
{{range .FlattenedCommands}}{{if not .Hidden}}  {{.FullCommand}}{{template "FormatCommand" .}}
{{.Help|Wrap 4}}
{{end}}{{end -}}
{{end -}}
{{if .Context.SelectedCommand -}}
usage: {{.App.Name}} {{.Context.SelectedCommand}}{{template "FormatCommand" .Context.SelectedCommand}}{{if .Context.SelectedCommand.Commands}} <command> [<args> ...]{{end}}

{{.Context.SelectedCommand.Help|Wrap 0}}
{{- else -}}
usage: {{.App.Name}} [<flags>] <command> [<args> ...]

{{.App.Help|Wrap 0}}
{{- end}}{{range flagGroups .Context.SelectedCommand .Context.Flags}}
{{.Title}}:
{{.Rows|FormatTwoColumns}}
{{- end}}
{{- if .Context.Args}}
Args:
{{.Context.Args|ArgsToTwoColumns|FormatTwoColumns}}
{{- end}}
{{- with examples .Context.SelectedCommand}}
Examples:
{{.}}
{{end}}
{{- if .Context.SelectedCommand}}
{{- if len .Context.SelectedCommand.Commands}}
Subcommands:
{{template "FormatCommands" .Context.SelectedCommand}}
{{- end}}
{{- else if .App.Commands}}
Commands:
{{template "FormatCommands" .App}}
{{- end}}
`

// flagGroup is one titled group of flags in help.
type flagGroup struct {
	Title string
	Rows  [][2]string
}

// outputFlags are the global flags every command has.
var outputFlags = map[string]bool{"output": true, "log-format": true, "verbose": true, "help": true, "version": true}

func usageFuncs() template.FuncMap {
	return template.FuncMap{"flagGroups": flagGroups, "examples": examples}
}

// flagGroups sorts the flags in scope into the command's own, the store
// settings of the stores it works on, and output.
func flagGroups(cm *kingpin.CmdModel, flags []*kingpin.FlagModel) []flagGroup {
	var stores map[string]bool
	if cm != nil {
		if c := lookupCommand(cm.FullCommand); c != nil {
			stores = storeFlagNames(c.helpScope())
		}
	}
	own := flagGroup{Title: "Flags"}
	store := flagGroup{Title: "Store (flag > environment > config file > default)"}
	out := flagGroup{Title: "Output"}
	for _, f := range flags {
		if f.Hidden {
			continue
		}
		row := [2]string{flagLabel(f), flagHelp(f)}
		switch {
		case outputFlags[f.Name]:
			out.Rows = append(out.Rows, row)
		case isStoreFlag(f.Name):
			if stores[f.Name] {
				store.Rows = append(store.Rows, row)
			}
		default:
			own.Rows = append(own.Rows, row)
		}
	}
	var groups []flagGroup
	for _, g := range []flagGroup{own, store, out} {
		if len(g.Rows) > 0 {
			groups = append(groups, g)
		}
	}
	return groups
}

func isStoreFlag(name string) bool {
	if name == "config" || name == "wait-for" {
		return true
	}
	for _, s := range config.Table {
		if s.Flag == name {
			return true
		}
	}
	return false
}

// helpScope is the stores whose settings a command's help lists.
func (c *command) helpScope() config.Scope {
	if c.path == "demo" || c.path == "dev seed" {
		return config.Scope{Redis: true, SQL: true}
	}
	sc, _, _ := c.storeScope(&opts{})
	return sc
}

// flagLabel is a flag as it is typed: a switch is shown as the one form
// that changes something (--yes, --no-task-logs), not as --[no-]yes.
func flagLabel(f *kingpin.FlagModel) string {
	name := "--" + f.Name
	switch {
	case f.IsBoolFlag() && len(f.Default) > 0 && f.Default[0] == "true":
		name = "--no-" + f.Name
	case !f.IsBoolFlag():
		name += "=" + f.FormatPlaceHolder()
	}
	if f.Short != 0 {
		return fmt.Sprintf("-%c, %s", f.Short, name)
	}
	return "    " + name
}

func flagHelp(f *kingpin.FlagModel) string {
	if f.IsBoolFlag() && len(f.Default) > 0 && f.Default[0] == "true" {
		return "Turns off: " + f.Help
	}
	return f.Help
}

func examples(cm *kingpin.CmdModel) string {
	if cm == nil {
		return "  outpost demo                          # see it work on an in-process Redis\n" +
			"  outpost migrate plan                  # what apply would do\n" +
			"  outpost migrate apply                 # shows the plan, asks, applies\n" +
			"  outpost migrate apply --help          # one command's flags"
	}
	c := lookupCommand(cm.FullCommand)
	if c == nil || len(c.examples) == 0 {
		return ""
	}
	return "  " + strings.Join(c.examples, "\n  ")
}

var (
	expectedCommand = regexp.MustCompile(`expected command but got "([^"]*)"`)
	unknownFlag     = regexp.MustCompile(`unknown long flag '--([^']*)'`)
)

// explainParseError adds to kingpin's message a suggestion for a mistyped
// command or flag (`migrate aply`: did you mean apply?).
func explainParseError(app *kingpin.Application, args []string, err error) string {
	msg := err.Error()
	var parent *kingpin.CmdModel
	if pc, _ := app.ParseContext(args); pc != nil && pc.SelectedCommand != nil {
		parent = pc.SelectedCommand.Model()
	}
	if m := expectedCommand.FindStringSubmatch(msg); m != nil {
		var names []string
		subs := app.Model().Commands
		where := "outpost"
		if parent != nil {
			subs, where = parent.Commands, "outpost "+parent.FullCommand
		}
		for _, s := range subs {
			if !s.Hidden {
				names = append(names, s.Name)
			}
		}
		msg = fmt.Sprintf("%q is not a command of %s", m[1], where)
		if s := closest(m[1], names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return msg + " (commands: " + strings.Join(names, ", ") + ")"
	}
	if m := unknownFlag.FindStringSubmatch(msg); m != nil {
		var names []string
		for _, f := range app.Model().Flags {
			names = append(names, f.Name)
		}
		if parent != nil {
			for _, f := range parent.Flags {
				if !f.Hidden {
					names = append(names, f.Name)
				}
			}
		}
		if s := closest(m[1], names); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
	}
	return msg
}

// selectedPath is the command the arguments name, even when they do not
// parse (for the report's kind).
func selectedPath(app *kingpin.Application, args []string) string {
	if pc, _ := app.ParseContext(args); pc != nil && pc.SelectedCommand != nil {
		return pc.SelectedCommand.FullCommand()
	}
	return ""
}

// closest is the candidate within edit distance 2 of word (or that starts
// with it), the nearest first; "" when none is close.
func closest(word string, candidates []string) string {
	best, bestD := "", 3
	sort.Strings(candidates)
	for _, c := range candidates {
		d := editDistance(word, c)
		if strings.HasPrefix(c, word) && len(word) >= 3 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
