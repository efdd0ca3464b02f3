package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Field describes one setting, from the tags of Settings: what --help, the
// README and the deploy files' tests are checked against.
type Field struct {
	Name    string // the Go field name
	Env     string // the environment variable, with EnvPrefix
	Flag    string // the flag without "--"; "" for secrets
	Default string // envDefault, "" for none
	Help    string
	kind    reflect.Kind
	index   []int
}

// Fields lists every setting in the order of Settings (route fields first).
func Fields() []Field {
	var out []Field
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("env") == "-" {
				continue // read by Load from another setting's file, not a setting
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
				walk(f.Type, idx)
				continue
			}
			out = append(out, Field{
				Name: f.Name, Env: EnvPrefix + f.Tag.Get("env"), Flag: f.Tag.Get("flag"),
				Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help"), kind: f.Type.Kind(), index: idx,
			})
		}
	}
	walk(reflect.TypeFor[Settings](), nil)
	return out
}

// Value formats the field's value in s, as --help shows it (secrets redacted).
func (f Field) Value(s *Settings) string {
	v := reflect.ValueOf(s).Elem().FieldByIndex(f.index)
	if st, ok := v.Interface().(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprint(v.Interface())
}

// EnvOfFlag is the environment variable name (without EnvPrefix) of a flag.
func EnvOfFlag(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func fieldByName(name string) (Field, bool) {
	for _, f := range Fields() {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// SettingName names a field (e.g. "ClientID") as the user writes it: its
// environment variable and flag.
func SettingName(field string) string {
	f, ok := fieldByName(field)
	if !ok {
		return field
	}
	if f.Flag != "" {
		return f.Env + " (--" + f.Flag + ")"
	}
	return f.Env
}

// fieldEnv is a field's environment variable without EnvPrefix.
func fieldEnv(field string) string {
	f, _ := fieldByName(field)
	return strings.TrimPrefix(f.Env, EnvPrefix)
}

// Changed lists the settings whose values differ between a and b.
func Changed(a, b *Settings) []Field {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []Field
	for _, f := range Fields() {
		if !reflect.DeepEqual(va.FieldByIndex(f.index).Interface(), vb.FieldByIndex(f.index).Interface()) {
			out = append(out, f)
		}
	}
	return out
}

// ChangedProcess lists the process settings whose values differ between a and b.
func ChangedProcess(a, b *Settings) []Field {
	var out []Field
	for _, f := range Changed(a, b) {
		if !isRouteField(f) {
			out = append(out, f)
		}
	}
	return out
}

// ChangedRoute lists the route settings whose values differ between a and b.
func ChangedRoute(a, b *Route) []Field {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []Field
	for _, f := range Fields() {
		if isRouteField(f) && !reflect.DeepEqual(va.Field(f.index[1]).Interface(), vb.Field(f.index[1]).Interface()) {
			out = append(out, f)
		}
	}
	return out
}

// FileKey names a route setting as a configuration file writes it
// ("client_secret_file").
func FileKey(f Field) string { return strings.ToLower(strings.TrimPrefix(f.Env, EnvPrefix)) }
