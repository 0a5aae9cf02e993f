package tmpl

import (
	"fmt"
	"strconv"
	"strings"
	"text/template/parse"

	"github.com/etcdplay/etcdplay/modules"
)

// builtins are text/template's own functions: a bare name among them is a
// function, never a variable.
var builtins = map[string]bool{
	"and": true, "or": true, "not": true, "len": true, "index": true, "slice": true,
	"print": true, "printf": true, "println": true, "html": true, "js": true,
	"urlquery": true, "call": true, "eq": true, "ne": true, "lt": true, "le": true,
	"gt": true, "ge": true,
}

func isFunc(name string, known map[string]any) bool {
	_, ok := known[name]
	return ok || builtins[name]
}

// rewriteList makes the parse tree strict-but-friendly: bare names become
// variables (Ansible's {{ x }}), and the input of default is looked up
// softly so that `x | default 1` works for an undefined x.
func rewriteList(l *parse.ListNode, known map[string]any) *Error {
	if l == nil {
		return nil
	}
	for _, n := range l.Nodes {
		var err *Error
		switch t := n.(type) {
		case *parse.ActionNode:
			err = rewritePipe(t.Pipe, known)
		case *parse.IfNode:
			err = rewriteBranch(&t.BranchNode, known)
		case *parse.RangeNode:
			err = rewriteBranch(&t.BranchNode, known)
		case *parse.WithNode:
			err = rewriteBranch(&t.BranchNode, known)
		case *parse.TemplateNode:
			err = rewritePipe(t.Pipe, known)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func rewriteBranch(b *parse.BranchNode, known map[string]any) *Error {
	if err := rewritePipe(b.Pipe, known); err != nil {
		return err
	}
	if err := rewriteList(b.List, known); err != nil {
		return err
	}
	return rewriteList(b.ElseList, known)
}

func rewritePipe(p *parse.PipeNode, known map[string]any) *Error {
	if p == nil {
		return nil
	}
	for i, cmd := range p.Cmds {
		if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok && dataFuncs[id.Ident] {
			cmd.Args = append([]parse.Node{id, root(id.Pos)}, cmd.Args[1:]...)
		}
		for j, arg := range cmd.Args {
			switch a := arg.(type) {
			case *parse.IdentifierNode:
				if isFunc(a.Ident, known) {
					continue
				}
				// A name in function position with arguments, or fed by a
				// pipe, is a call to a function that does not exist.
				if j == 0 && (len(cmd.Args) > 1 || i > 0) {
					msg := fmt.Sprintf("unknown function %q", a.Ident)
					if c := modules.Closest(a.Ident, funcNames(known)); c != "" {
						msg += fmt.Sprintf(" (did you mean %q?)", c)
					}
					return &Error{Msg: msg}
				}
				cmd.Args[j] = field(a.Pos, []string{a.Ident})
			case *parse.ChainNode:
				if id, ok := a.Node.(*parse.IdentifierNode); ok && !isFunc(id.Ident, known) {
					idents := []string{id.Ident}
					for _, f := range a.Field {
						idents = append(idents, strings.TrimPrefix(f, "."))
					}
					cmd.Args[j] = field(a.Pos, idents)
				} else if pn, ok := a.Node.(*parse.PipeNode); ok {
					if err := rewritePipe(pn, known); err != nil {
						return err
					}
				}
			case *parse.PipeNode:
				if err := rewritePipe(a, known); err != nil {
					return err
				}
			}
		}
	}
	softenDefault(p)
	return nil
}

// softenDefault replaces a plain variable read feeding default (".x |
// default 1" or "default 1 .x") with a lookup that yields nil when x is
// undefined, instead of failing under missingkey=error.
func softenDefault(p *parse.PipeNode) {
	for i, cmd := range p.Cmds {
		if !isIdent(cmd.Args[0], "default") {
			continue
		}
		if i > 0 && len(cmd.Args) == 2 && len(p.Cmds[i-1].Args) == 1 {
			if f, ok := p.Cmds[i-1].Args[0].(*parse.FieldNode); ok {
				p.Cmds[i-1].Args = softGet(f).Cmds[0].Args
			}
		}
		if len(cmd.Args) == 3 {
			if f, ok := cmd.Args[2].(*parse.FieldNode); ok {
				cmd.Args[2] = softGet(f)
			}
		}
	}
}

func isIdent(n parse.Node, name string) bool {
	id, ok := n.(*parse.IdentifierNode)
	return ok && id.Ident == name
}

func field(pos parse.Pos, idents []string) *parse.FieldNode {
	return &parse.FieldNode{NodeType: parse.NodeField, Pos: pos, Ident: idents}
}

// root is the variable $, the data the template was executed with.
func root(pos parse.Pos) *parse.VariableNode {
	return &parse.VariableNode{NodeType: parse.NodeVariable, Pos: pos, Ident: []string{"$"}}
}

// softGet builds the pipeline (__get $ "a.b").
func softGet(f *parse.FieldNode) *parse.PipeNode {
	path := strings.Join(f.Ident, ".")
	return &parse.PipeNode{NodeType: parse.NodePipe, Pos: f.Pos, Cmds: []*parse.CommandNode{{
		NodeType: parse.NodeCommand, Pos: f.Pos, Args: []parse.Node{
			&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: f.Pos, Ident: "__get"},
			root(f.Pos),
			&parse.StringNode{NodeType: parse.NodeString, Pos: f.Pos, Quoted: strconv.Quote(path), Text: path},
		}}}}
}
