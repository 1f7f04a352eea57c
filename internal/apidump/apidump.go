// Package apidump renders the exported API of a package directory as
// sorted text, one declaration per entry, for golden-file tests that fail
// when the public API changes without the file.
package apidump

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"sort"
	"strings"
)

// Dump returns the exported declarations of the non-test Go files in dir,
// sorted, and how many exported identifiers they declare (types, functions,
// methods, constants and variables; not fields or interface methods).
func Dump(dir string) (text string, ids int, err error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.SkipObjectResolution)
	if err != nil {
		return "", 0, err
	}
	var entries []string
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				e, n := render(fset, d)
				entries = append(entries, e...)
				ids += n
			}
		}
	}
	sort.Strings(entries)
	return strings.Join(entries, "\n") + "\n", ids, nil
}

// render prints d's exported parts without doc comments or bodies.
func render(fset *token.FileSet, d ast.Decl) ([]string, int) {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() || (d.Recv != nil && !exportedRecv(d.Recv)) {
			return nil, 0
		}
		fd := *d
		fd.Doc, fd.Body = nil, nil
		return []string{print(fset, &fd)}, 1
	case *ast.GenDecl:
		var out []string
		n := 0
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					ts := *s
					ts.Doc, ts.Comment = nil, nil
					ts.Type = exportedOnly(ts.Type)
					out = append(out, "type "+print(fset, &ts))
					n++
				}
			case *ast.ValueSpec:
				for i, name := range s.Names {
					if !name.IsExported() {
						continue
					}
					line := d.Tok.String() + " " + name.Name
					if s.Type != nil {
						line += " " + print(fset, s.Type)
					} else if i < len(s.Values) && d.Tok == token.CONST {
						line += " = " + print(fset, s.Values[i])
					}
					out = append(out, line)
					n++
				}
			}
		}
		return out, n
	}
	return nil, 0
}

func exportedRecv(r *ast.FieldList) bool {
	t := r.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// exportedOnly drops unexported fields and the comments of a struct or
// interface type.
func exportedOnly(t ast.Expr) ast.Expr {
	switch x := t.(type) {
	case *ast.StructType:
		c := *x
		c.Fields = exportedFields(x.Fields)
		return &c
	case *ast.InterfaceType:
		c := *x
		c.Methods = exportedFields(x.Methods)
		return &c
	}
	return t
}

func exportedFields(list *ast.FieldList) *ast.FieldList {
	kept := &ast.FieldList{}
	for _, f := range list.List {
		g := *f
		g.Doc, g.Comment, g.Names = nil, nil, nil
		for _, n := range f.Names {
			if n.IsExported() {
				g.Names = append(g.Names, n)
			}
		}
		if len(f.Names) > 0 && len(g.Names) == 0 {
			continue
		}
		kept.List = append(kept.List, &g)
	}
	return kept
}

func print(fset *token.FileSet, n any) string {
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, n); err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return b.String()
}
