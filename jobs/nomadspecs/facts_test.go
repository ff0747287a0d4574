package nomadspecs

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
)

// The facts that a job specification's HCL and JSON forms must agree on.
// They are extracted independently from each form: from the HCL syntax tree
// (hcl/v2 hclsyntax, evaluating the file's variable defaults, keeping Nomad's
// runtime interpolations such as ${NOMAD_META_command} as text, as Nomad
// does) and from the api.Job the JSON decodes into.

type jobFacts struct {
	ID            string
	Type          string
	Datacenters   []string
	Meta          map[string]string
	Parameterized *paramFacts
	Reschedule    *policyFacts
	Groups        []groupFacts
}

type paramFacts struct {
	Payload  string
	Required []string
	Optional []string
}

type policyFacts struct {
	Attempts      *int
	Mode          string
	Unlimited     *bool
	Delay         time.Duration
	DelayFunction string
	MaxDelay      time.Duration
}

type portFacts struct {
	Label string
	To    int
}

type serviceFacts struct {
	Name, Port, Provider string
}

type groupFacts struct {
	Name       string
	Count      int
	Restart    *policyFacts
	Reschedule *policyFacts
	Update     *updateFacts
	Ports      []portFacts
	Services   []serviceFacts
	Tasks      []taskFacts
}

type updateFacts struct {
	HealthyDeadline, ProgressDeadline time.Duration
}

type templateFacts struct {
	Dest, Data, ChangeMode string
	Env                    bool
}

type taskFacts struct {
	Name        string
	Driver      string
	Image       string
	Args        []string
	Ports       []string
	Hook        string
	Sidecar     bool
	KillTimeout time.Duration
	KillSignal  string
	Restart     *policyFacts
	Templates   []templateFacts
	CPU         int
	MemoryMB    int
}

// ---- from api.Job (the JSON twin) ----

func factsFromJob(j *api.Job) jobFacts {
	f := jobFacts{
		ID:          deref(j.ID),
		Type:        deref(j.Type),
		Datacenters: j.Datacenters,
		Meta:        j.Meta,
		Reschedule:  reschedFromAPI(j.Reschedule),
	}
	if p := j.ParameterizedJob; p != nil {
		f.Parameterized = &paramFacts{Payload: p.Payload, Required: p.MetaRequired, Optional: p.MetaOptional}
	}
	for _, g := range j.TaskGroups {
		gf := groupFacts{
			Name:       deref(g.Name),
			Count:      derefInt(g.Count, 1),
			Restart:    restartFromAPI(g.RestartPolicy),
			Reschedule: reschedFromAPI(g.ReschedulePolicy),
		}
		if u := g.Update; u != nil {
			gf.Update = &updateFacts{}
			if u.HealthyDeadline != nil {
				gf.Update.HealthyDeadline = *u.HealthyDeadline
			}
			if u.ProgressDeadline != nil {
				gf.Update.ProgressDeadline = *u.ProgressDeadline
			}
		}
		for _, n := range g.Networks {
			for _, p := range n.DynamicPorts {
				gf.Ports = append(gf.Ports, portFacts{Label: p.Label, To: p.To})
			}
		}
		for _, s := range g.Services {
			gf.Services = append(gf.Services, serviceFacts{Name: s.Name, Port: s.PortLabel, Provider: s.Provider})
		}
		for _, t := range g.Tasks {
			tf := taskFacts{
				Name:       t.Name,
				Driver:     t.Driver,
				KillSignal: t.KillSignal,
				Restart:    restartFromAPI(t.RestartPolicy),
			}
			if t.KillTimeout != nil {
				tf.KillTimeout = *t.KillTimeout
			}
			if t.Lifecycle != nil {
				tf.Hook, tf.Sidecar = t.Lifecycle.Hook, t.Lifecycle.Sidecar
			}
			tf.Image, _ = t.Config["image"].(string)
			tf.Args, _ = Args(t)
			if ports, ok := t.Config["ports"].([]any); ok {
				for _, p := range ports {
					s, _ := p.(string)
					tf.Ports = append(tf.Ports, s)
				}
			}
			for _, tp := range t.Templates {
				tf.Templates = append(tf.Templates, templateFacts{
					Dest: deref(tp.DestPath), Data: deref(tp.EmbeddedTmpl), ChangeMode: deref(tp.ChangeMode),
					Env: tp.Envvars != nil && *tp.Envvars,
				})
			}
			if r := t.Resources; r != nil {
				tf.CPU, tf.MemoryMB = derefInt(r.CPU, 0), derefInt(r.MemoryMB, 0)
			}
			gf.Tasks = append(gf.Tasks, tf)
		}
		f.Groups = append(f.Groups, gf)
	}
	return f
}

func restartFromAPI(r *api.RestartPolicy) *policyFacts {
	if r == nil {
		return nil
	}
	p := &policyFacts{Attempts: r.Attempts, Mode: deref(r.Mode)}
	if r.Delay != nil {
		p.Delay = *r.Delay
	}
	return p
}

func reschedFromAPI(r *api.ReschedulePolicy) *policyFacts {
	if r == nil {
		return nil
	}
	p := &policyFacts{Attempts: r.Attempts, Unlimited: r.Unlimited, DelayFunction: deref(r.DelayFunction)}
	if r.Delay != nil {
		p.Delay = *r.Delay
	}
	if r.MaxDelay != nil {
		p.MaxDelay = *r.MaxDelay
	}
	return p
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefInt(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// ---- from HCL ----

// hclReader evaluates the expressions of one HCL job file.
type hclReader struct {
	src  []byte
	ctx  *hcl.EvalContext
	errs []string
}

func (r *hclReader) errorf(rng hcl.Range, format string, args ...any) {
	r.errs = append(r.errs, rng.String()+": "+fmt.Sprintf(format, args...))
}

// value evaluates expr. Template parts that reference anything but var.* are
// Nomad runtime interpolations and are kept as "${...}" text.
func (r *hclReader) value(expr hclsyntax.Expression) any {
	switch e := expr.(type) {
	case *hclsyntax.TemplateExpr:
		var sb strings.Builder
		for _, part := range e.Parts {
			if lit, ok := part.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String {
				sb.WriteString(lit.Val.AsString())
				continue
			}
			sb.WriteString(r.interpolation(part))
		}
		return sb.String()
	case *hclsyntax.TemplateWrapExpr:
		return r.interpolation(e.Wrapped)
	case *hclsyntax.TupleConsExpr:
		out := make([]any, 0, len(e.Exprs))
		for _, x := range e.Exprs {
			out = append(out, r.value(x))
		}
		return out
	}
	v, diags := expr.Value(r.ctx)
	if diags.HasErrors() {
		r.errorf(expr.Range(), "%s", diags.Error())
		return nil
	}
	return ctyToGo(v)
}

func (r *hclReader) interpolation(part hclsyntax.Expression) string {
	if tr, ok := part.(*hclsyntax.ScopeTraversalExpr); ok && tr.Traversal.RootName() != "var" {
		rng := tr.Range()
		return "${" + string(r.src[rng.Start.Byte:rng.End.Byte]) + "}"
	}
	v, diags := part.Value(r.ctx)
	if diags.HasErrors() {
		r.errorf(part.Range(), "%s", diags.Error())
		return ""
	}
	s, _ := ctyToGo(v).(string)
	return s
}

func ctyToGo(v cty.Value) any {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString()
	case t == cty.Bool:
		return v.True()
	case t == cty.Number:
		bf := v.AsBigFloat()
		if i, acc := bf.Int64(); acc == big.Exact {
			return int(i)
		}
		f, _ := bf.Float64()
		return f
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		var out []any
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, ctyToGo(e))
		}
		return out
	}
	return nil
}

func (r *hclReader) attr(b *hclsyntax.Body, name string) any {
	a, ok := b.Attributes[name]
	if !ok {
		return nil
	}
	return r.value(a.Expr)
}

func (r *hclReader) str(b *hclsyntax.Body, name string) string {
	s, _ := r.attr(b, name).(string)
	return s
}

func (r *hclReader) strs(b *hclsyntax.Body, name string) []string {
	list, _ := r.attr(b, name).([]any)
	if list == nil {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

func (r *hclReader) intp(b *hclsyntax.Body, name string) *int {
	if i, ok := r.attr(b, name).(int); ok {
		return &i
	}
	return nil
}

func (r *hclReader) boolp(b *hclsyntax.Body, name string) *bool {
	if v, ok := r.attr(b, name).(bool); ok {
		return &v
	}
	return nil
}

func (r *hclReader) dur(b *hclsyntax.Body, name string) time.Duration {
	s := r.str(b, name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		r.errorf(b.Attributes[name].SrcRange, "%v", err)
	}
	return d
}

func blocks(b *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, blk := range b.Blocks {
		if blk.Type == typ {
			out = append(out, blk)
		}
	}
	return out
}

func block(b *hclsyntax.Body, typ string) *hclsyntax.Body {
	if bs := blocks(b, typ); len(bs) > 0 {
		return bs[0].Body
	}
	return nil
}

// factsFromHCL parses src and extracts the job's facts.
func factsFromHCL(filename string, src []byte) (jobFacts, error) {
	file, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return jobFacts{}, diags
	}
	body := file.Body.(*hclsyntax.Body)
	r := &hclReader{src: src}

	// Variables: their defaults, as `nomad job run` without -var uses them.
	vars := map[string]cty.Value{}
	for _, v := range blocks(body, "variable") {
		if a, ok := v.Body.Attributes["default"]; ok {
			val, d := a.Expr.Value(nil)
			if d.HasErrors() {
				return jobFacts{}, d
			}
			vars[v.Labels[0]] = val
		}
	}
	r.ctx = &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}}

	jobs := blocks(body, "job")
	if len(jobs) != 1 {
		return jobFacts{}, fmt.Errorf("%s: %d job blocks, want 1", filename, len(jobs))
	}
	jb := jobs[0].Body
	f := jobFacts{ID: jobs[0].Labels[0], Type: r.str(jb, "type"), Datacenters: r.strs(jb, "datacenters")}
	if f.Type == "" {
		f.Type = "service" // Nomad's default
	}
	f.Meta = r.meta(block(jb, "meta"))
	if p := block(jb, "parameterized"); p != nil {
		f.Parameterized = &paramFacts{Payload: r.str(p, "payload"), Required: r.strs(p, "meta_required"), Optional: r.strs(p, "meta_optional")}
	}
	f.Reschedule = r.resched(block(jb, "reschedule"))

	for _, g := range blocks(jb, "group") {
		gb := g.Body
		gf := groupFacts{Name: g.Labels[0], Count: 1, Restart: r.restart(block(gb, "restart")), Reschedule: r.resched(block(gb, "reschedule"))}
		if c := r.intp(gb, "count"); c != nil {
			gf.Count = *c
		}
		if u := block(gb, "update"); u != nil {
			gf.Update = &updateFacts{HealthyDeadline: r.dur(u, "healthy_deadline"), ProgressDeadline: r.dur(u, "progress_deadline")}
		}
		for _, n := range blocks(gb, "network") {
			for _, p := range blocks(n.Body, "port") {
				to := 0
				if v := r.intp(p.Body, "to"); v != nil {
					to = *v
				}
				gf.Ports = append(gf.Ports, portFacts{Label: p.Labels[0], To: to})
			}
		}
		for _, s := range blocks(gb, "service") {
			gf.Services = append(gf.Services, serviceFacts{Name: r.str(s.Body, "name"), Port: r.str(s.Body, "port"), Provider: r.str(s.Body, "provider")})
		}
		for _, t := range blocks(gb, "task") {
			tb := t.Body
			tf := taskFacts{
				Name: t.Labels[0], Driver: r.str(tb, "driver"),
				KillTimeout: r.dur(tb, "kill_timeout"), KillSignal: r.str(tb, "kill_signal"),
				Restart: r.restart(block(tb, "restart")),
			}
			if lc := block(tb, "lifecycle"); lc != nil {
				tf.Hook = r.str(lc, "hook")
				if s := r.boolp(lc, "sidecar"); s != nil {
					tf.Sidecar = *s
				}
			}
			if c := block(tb, "config"); c != nil {
				tf.Image, tf.Args, tf.Ports = r.str(c, "image"), r.strs(c, "args"), r.strs(c, "ports")
			}
			for _, tp := range blocks(tb, "template") {
				env := r.boolp(tp.Body, "env")
				tf.Templates = append(tf.Templates, templateFacts{
					Dest: r.str(tp.Body, "destination"), Data: r.str(tp.Body, "data"),
					ChangeMode: r.str(tp.Body, "change_mode"), Env: env != nil && *env,
				})
			}
			if res := block(tb, "resources"); res != nil {
				tf.CPU, tf.MemoryMB = derefInt(r.intp(res, "cpu"), 0), derefInt(r.intp(res, "memory"), 0)
			}
			gf.Tasks = append(gf.Tasks, tf)
		}
		f.Groups = append(f.Groups, gf)
	}
	if len(r.errs) > 0 {
		return f, fmt.Errorf("%s", strings.Join(r.errs, "; "))
	}
	return f, nil
}

func (r *hclReader) meta(b *hclsyntax.Body) map[string]string {
	if b == nil {
		return nil
	}
	out := map[string]string{}
	for name := range b.Attributes {
		out[name] = fmt.Sprint(r.attr(b, name))
	}
	return out
}

func (r *hclReader) restart(b *hclsyntax.Body) *policyFacts {
	if b == nil {
		return nil
	}
	return &policyFacts{Attempts: r.intp(b, "attempts"), Mode: r.str(b, "mode"), Delay: r.dur(b, "delay")}
}

func (r *hclReader) resched(b *hclsyntax.Body) *policyFacts {
	if b == nil {
		return nil
	}
	return &policyFacts{
		Attempts: r.intp(b, "attempts"), Unlimited: r.boolp(b, "unlimited"),
		Delay: r.dur(b, "delay"), DelayFunction: r.str(b, "delay_function"), MaxDelay: r.dur(b, "max_delay"),
	}
}
