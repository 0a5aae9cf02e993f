package cli

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/playbook"
)

// Shell completion (etcdplay completion bash|zsh|fish|powershell): the
// playbook argument, output formats, and --limit and --tags from the
// inventory and playbook already on the command line. A completion never
// connects anywhere.

func completePlaybooks(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []string{"yml", "yaml"}, cobra.ShellCompDirectiveFilterFileExt
}

func completeWords(words ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return words, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeHostsAndGroups offers the inventory's groups and hosts for
// --limit (after a "," or "!", the rest of a pattern).
func completeHostsAndGroups(lf *loadFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		inv, err := lf.loadInventory()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		head := toComplete[:strings.LastIndexAny(toComplete, ",!&:")+1]
		var out []string
		for g := range inv.Groups() {
			out = append(out, head+g)
		}
		for _, h := range inv.Hosts() {
			out = append(out, head+h.Name)
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// completeTags offers the tags the playbook argument uses.
func completeTags(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	pb, err := playbook.Parse(args[0])
	if err != nil || pb == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	seen := map[string]bool{}
	for _, p := range pb.Plays {
		for _, t := range append(append([]*playbook.Task(nil), p.Tasks...), p.Handlers...) {
			for _, tag := range t.Tags {
				seen[tag] = true
			}
		}
	}
	var out []string
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}

// registerCompletions adds the completions of the flags loadFlags
// registered.
func (f *loadFlags) registerCompletions(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("limit", completeHostsAndGroups(f))
	_ = cmd.RegisterFlagCompletionFunc("tags", completeTags)
	_ = cmd.RegisterFlagCompletionFunc("skip-tags", completeTags)
	_ = cmd.RegisterFlagCompletionFunc("inventory", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"yml", "yaml", "ini", "json"}, cobra.ShellCompDirectiveFilterFileExt
	})
}
