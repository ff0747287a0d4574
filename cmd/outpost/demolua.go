package main

import (
	"crypto/sha1"
	"encoding/hex"
	"math"
	"strconv"
	"strings"

	"github.com/alicebob/miniredis/v2/server"
	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// demoLua runs the store's scripts (EVAL, EVALSHA, SCRIPT) in one Lua
// interpreter kept for the store's life. miniredis builds a new one, with
// its libraries, for every script run, which made the migrations' fenced
// writes (one script per key) the demo's main cost. Scripts run one at a
// time under miniredis's lock, as on Redis; their redis.call goes through
// the front's nested calls (miniredis's commands, the front's RESTORE).
// As on Redis, a script cannot create globals.
type demoLua struct {
	f       *demoFront
	l       *lua.LState
	scripts map[string]string // by SHA1
	protos  map[string]*lua.FunctionProto
	cur     *demoConn // the connection whose script runs
	ro      bool      // the running script is EVAL_RO/EVALSHA_RO
	runs    int       // scripts run
}

func newDemoLua(f *demoFront) (*demoLua, error) {
	d := &demoLua{f: f, scripts: map[string]string{}, protos: map[string]*lua.FunctionProto{}}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"dofile", "loadfile", "load", "loadstring", "require", "module"} {
		l.G.Global.RawSetString(name, lua.LNil)
	}
	mod := l.NewTable()
	mod.RawSetString("call", l.NewFunction(func(l *lua.LState) int { return d.call(l, true) }))
	mod.RawSetString("pcall", l.NewFunction(func(l *lua.LState) int { return d.call(l, false) }))
	mod.RawSetString("error_reply", l.NewFunction(func(l *lua.LState) int { return replyTable(l, "err") }))
	mod.RawSetString("status_reply", l.NewFunction(func(l *lua.LState) int { return replyTable(l, "ok") }))
	mod.RawSetString("sha1hex", l.NewFunction(func(l *lua.LState) int { l.Push(lua.LString(sha1Hex(l.CheckString(1)))); return 1 }))
	mod.RawSetString("log", l.NewFunction(func(*lua.LState) int { return 0 }))
	l.G.Global.RawSetString("redis", mod)
	l.G.Global.RawSetString("server", mod)
	l.G.Global.RawSetString("KEYS", l.NewTable())
	l.G.Global.RawSetString("ARGV", l.NewTable())
	mt := l.NewTable()
	mt.RawSetString("__newindex", l.NewFunction(func(l *lua.LState) int {
		l.RaiseError("Attempt to modify a readonly table: %s", l.CheckAny(2).String())
		return 0
	}))
	mt.RawSetString("__index", l.NewFunction(func(l *lua.LState) int {
		l.RaiseError("Script attempted to access nonexistent global variable '%s'", l.CheckAny(2).String())
		return 0
	}))
	l.SetMetatable(l.G.Global, mt)
	d.l = l
	return d, nil
}

func replyTable(l *lua.LState, field string) int {
	t := l.NewTable()
	t.RawSetString(field, lua.LString(l.CheckString(1)))
	l.Push(t)
	return 1
}

func sha1Hex(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// script is SCRIPT LOAD, EXISTS and FLUSH.
func (d *demoLua) script(p *server.Peer, args []string) {
	sub := ""
	if len(args) > 1 {
		sub = strings.ToUpper(args[1])
	}
	switch {
	case sub == "LOAD" && len(args) == 3:
		sha := sha1Hex(args[2])
		if _, err := d.compile(sha, args[2]); err != nil {
			p.WriteError(err.Error())
			return
		}
		d.scripts[sha] = args[2]
		p.WriteBulk(sha)
	case sub == "EXISTS" && len(args) > 2:
		p.WriteLen(len(args) - 2)
		for _, sha := range args[2:] {
			_, ok := d.scripts[strings.ToLower(sha)]
			p.WriteInt(map[bool]int{false: 0, true: 1}[ok])
		}
	case sub == "FLUSH":
		d.scripts, d.protos = map[string]string{}, map[string]*lua.FunctionProto{}
		p.WriteOK()
	default:
		p.WriteError("ERR unknown subcommand or wrong number of arguments for 'script' command")
	}
}

type scriptError string

func (e scriptError) Error() string { return string(e) }

func (d *demoLua) compile(sha, body string) (*lua.FunctionProto, error) {
	if p, ok := d.protos[sha]; ok {
		return p, nil
	}
	chunk, err := parse.Parse(strings.NewReader(body), "@user_script")
	if err != nil {
		return nil, scriptError("ERR Error compiling script (new function): " + strings.ReplaceAll(err.Error(), "\n", " "))
	}
	proto, err := lua.Compile(chunk, "@user_script")
	if err != nil {
		return nil, scriptError("ERR Error compiling script (new function): " + err.Error())
	}
	d.protos[sha] = proto
	return proto, nil
}

// eval is EVAL, EVALSHA and their _RO forms (lock held).
func (d *demoLua) eval(c *demoConn, p *server.Peer, name string, args []string) {
	if len(args) < 3 {
		p.WriteError("ERR wrong number of arguments for '" + strings.ToLower(name) + "' command")
		return
	}
	var sha, body string
	if strings.HasPrefix(name, "EVALSHA") {
		sha = strings.ToLower(args[1])
		var ok bool
		if body, ok = d.scripts[sha]; !ok {
			p.WriteError("NOSCRIPT No matching script. Please use EVAL.")
			return
		}
	} else {
		body = args[1]
		sha = sha1Hex(body)
	}
	proto, err := d.compile(sha, body)
	if err != nil {
		p.WriteError(err.Error())
		return
	}
	d.scripts[sha] = body
	n, err := strconv.Atoi(args[2])
	switch {
	case err != nil:
		p.WriteError("ERR value is not an integer or out of range")
		return
	case n < 0:
		p.WriteError("ERR Number of keys can't be negative")
		return
	case n > len(args)-3:
		p.WriteError("ERR Number of keys can't be greater than number of args")
		return
	}
	l := d.l
	l.G.Global.RawSetString("KEYS", stringTable(l, args[3:3+n]))
	l.G.Global.RawSetString("ARGV", stringTable(l, args[3+n:]))
	d.cur, d.ro = c, strings.HasSuffix(name, "_RO")
	d.runs++
	defer func() { d.cur = nil; l.SetTop(0) }()
	l.Push(l.NewFunctionFromProto(proto))
	if err := l.PCall(0, 1, nil); err != nil {
		p.WriteError(luaErrorText(err))
		return
	}
	writeLua(p, l.Get(-1), 0)
}

func stringTable(l *lua.LState, s []string) *lua.LTable {
	t := l.CreateTable(len(s), 0)
	for i, v := range s {
		t.RawSetInt(i+1, lua.LString(v))
	}
	return t
}

// luaErrorText is a script's error as Redis replies it: an error raised
// by redis.call keeps its code (WRONGTYPE ...), others are ERR.
func luaErrorText(err error) string {
	msg := err.Error()
	if ae, ok := err.(*lua.ApiError); ok && ae.Object != nil {
		msg = ae.Object.String()
		if t, ok := ae.Object.(*lua.LTable); ok {
			if e := t.RawGetString("err"); e != lua.LNil {
				msg = e.String()
			}
		}
	}
	if code, _, ok := strings.Cut(msg, " "); ok && code != "" && strings.ToUpper(code) == code && strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == "" {
		return msg
	}
	return "ERR Error running script: " + msg
}

// call is redis.call (raise) and redis.pcall.
func (d *demoLua) call(l *lua.LState, raise bool) int {
	n := l.GetTop()
	if n == 0 {
		return d.fail(l, raise, "ERR Please specify at least one argument for this redis lib call")
	}
	args := make([]string, n)
	for i := 1; i <= n; i++ {
		switch v := l.Get(i).(type) {
		case lua.LString:
			args[i-1] = string(v)
		case lua.LNumber:
			args[i-1] = formatLuaNumber(float64(v))
		default:
			return d.fail(l, raise, "ERR Lua redis lib command arguments must be strings or integers")
		}
	}
	name := strings.ToUpper(args[0])
	if n, msg, ok := d.f.ks.intValue(d.cur, name, args); ok {
		// A read the front answers itself, straight to Lua (the batch
		// scripts' HLEN per key).
		if msg != "" {
			return d.fail(l, raise, msg)
		}
		l.SetTop(0)
		l.Push(lua.LNumber(n))
		return 1
	}
	if d.ro && mayWrite(d.f.srv, name) && d.f.srv.IsRegisteredCommand(name) {
		return d.fail(l, raise, "ERR Write commands are not allowed from read-only scripts.")
	}
	if !own[name] && !d.f.srv.IsRegisteredCommand(name) {
		return d.fail(l, raise, "ERR Unknown Redis command called from script")
	}
	r, err := d.f.call(d.cur, args...)
	if err != nil {
		return d.fail(l, raise, err.Error())
	}
	l.SetTop(0)
	l.Push(toLua(l, r))
	return 1
}

func (d *demoLua) fail(l *lua.LState, raise bool, msg string) int {
	if raise {
		l.Error(lua.LString(msg), 0)
		return 0
	}
	l.SetTop(0)
	t := l.NewTable()
	t.RawSetString("err", lua.LString(msg))
	l.Push(t)
	return 1
}

func formatLuaNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e17 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', 17, 64)
}

// toLua converts a reply as Redis gives it to a script: integers to
// numbers, nil to false, arrays to tables, status replies to {ok=...}.
func toLua(l *lua.LState, r any) lua.LValue {
	switch v := r.(type) {
	case nil:
		return lua.LFalse
	case int:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case server.Simple:
		t := l.NewTable()
		t.RawSetString("ok", lua.LString(string(v)))
		return t
	case []any:
		t := l.CreateTable(len(v), 0)
		for i, e := range v {
			t.RawSetInt(i+1, toLua(l, e))
		}
		return t
	default:
		return lua.LFalse
	}
}

// writeLua writes a script's result as Redis does: numbers as integers,
// false and nil as null, true as 1, {err=}/{ok=} as error/status, tables
// as arrays up to their first nil.
func writeLua(p *server.Peer, v lua.LValue, depth int) {
	switch t := v.(type) {
	case lua.LBool:
		if t {
			p.WriteInt(1)
		} else {
			p.WriteNull()
		}
	case lua.LNumber:
		p.WriteInt(int(float64(t)))
	case lua.LString:
		p.WriteBulk(string(t))
	case *lua.LTable:
		if e := t.RawGetString("err"); e != lua.LNil {
			p.WriteError(e.String())
			return
		}
		if s := t.RawGetString("ok"); s != lua.LNil {
			p.WriteInline(s.String())
			return
		}
		n := 0
		for t.RawGetInt(n+1) != lua.LNil {
			n++
		}
		if depth > 64 {
			p.WriteError("ERR reached lua stack limit")
			return
		}
		p.WriteLen(n)
		for i := 1; i <= n; i++ {
			writeLua(p, t.RawGetInt(i), depth+1)
		}
	default:
		p.WriteNull()
	}
}
