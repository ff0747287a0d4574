package config

import (
	"fmt"

	"github.com/alecthomas/kingpin/v2"
)

// Flags are the global store flags of the command line, one per row of
// Table, plus --config.
type Flags struct {
	// ConfigFile is --config.
	ConfigFile *string
	values     map[string]func() string
	set        map[string]*bool
}

// RegisterFlags declares --config and one flag per setting on app (a bool
// setting gets a bool flag, every other a string parsed by Load, so that a
// wrong value is reported with the setting's name and source).
func RegisterFlags(app *kingpin.Application) *Flags {
	f := &Flags{values: map[string]func() string{}, set: map[string]*bool{}}
	f.ConfigFile = app.Flag("config", "Config file: YAML as Outpost's, or a .env file (env CONFIG). Without it Outpost's search order is used (see README).").PlaceHolder("FILE").String()
	for _, row := range Table {
		fl := app.Flag(row.Flag, row.Help+" (env "+row.Env+")")
		set := new(bool)
		fl.IsSetByUser(set)
		f.set[row.Key] = set
		if row.Kind == KindBool {
			v := fl.Bool()
			f.values[row.Key] = func() string { return fmt.Sprint(*v) }
		} else {
			v := fl.PlaceHolder(row.Placeholder).String()
			f.values[row.Key] = func() string { return *v }
		}
	}
	return f
}

// Settings are the settings given on the command line.
func (f *Flags) Settings() Settings {
	s := Settings{}
	for k, set := range f.set {
		if *set {
			s[k] = f.values[k]()
		}
	}
	return s
}

// IsSet says whether the setting was given on the command line.
func (f *Flags) IsSet(key string) bool { s := f.set[key]; return s != nil && *s }
