// Package winacl decides whether a Windows file's security descriptor keeps
// it to its user, as the Unix mode bits do elsewhere: the token store and
// the configuration file are refused when another account could read or
// change them. The decision (Descriptor.Problem, Fix) is portable and
// tested everywhere; reading a file's descriptor, the current user and
// restricting a new directory (acl_windows.go) exist on Windows only.
//
// A descriptor's discretionary ACL (DACL) lists who may do what
// (https://learn.microsoft.com/windows/win32/secauthz/access-control-lists);
// a file with no DACL at all lets everyone do everything.
package winacl

import (
	"fmt"
	"strings"
)

// Well-known SIDs that may always hold a file: the operating system and the
// local administrators, who could take any file anyway (as root on Unix).
const (
	System         = "S-1-5-18"
	Administrators = "S-1-5-32-544"
)

// creatorOwner stands, in an inheritable entry, for whoever creates the
// file: the file gets the entry with the creator's SID instead.
const creatorOwner = "S-1-3-0"

// Access mask bits (winnt.h; for a directory the first ones list it, add
// files and add subdirectories).
const (
	fileReadData     = 0x1
	fileWriteData    = 0x2
	fileAppendData   = 0x4
	fileReadEA       = 0x8
	fileWriteEA      = 0x10
	fileDeleteChild  = 0x40
	fileWriteAttribs = 0x100
	deleteRight      = 0x10000
	writeDAC         = 0x40000
	writeOwner       = 0x80000
	genericAll       = 0x10000000
	genericWrite     = 0x40000000
	genericRead      = 0x80000000
)

// WriteRights are the rights that change a file or what a directory holds,
// or who may: what no other account may have on a file coop-proxy trusts.
const WriteRights uint32 = fileWriteData | fileAppendData | fileWriteEA | fileDeleteChild | fileWriteAttribs |
	deleteRight | writeDAC | writeOwner | genericAll | genericWrite

// PrivateRights are WriteRights and reading the content: what no other
// account may have on the token store, which holds secrets.
const PrivateRights uint32 = WriteRights | fileReadData | fileReadEA | genericRead

// ACE is one access control entry of a DACL.
type ACE struct {
	SID  string // "S-1-5-21-…"
	Name string // DOMAIN\account, "" when it could not be looked up
	// Deny is an access-denied entry: it only takes rights away.
	Deny bool
	// InheritOnly entries are passed on to what is created in a directory
	// and do not apply to the directory itself (CREATOR OWNER's,
	// typically); ObjectInherit ones are passed on to its files.
	InheritOnly, ObjectInherit bool
	Mask                       uint32
}

// Descriptor is the part of a file's security descriptor that says who may
// use it.
type Descriptor struct {
	Owner, OwnerName string
	// NullDACL: the file has no DACL, and everyone may do everything.
	NullDACL bool
	DACL     []ACE
}

// Problem says what lets an account other than user (a SID), SYSTEM and the
// Administrators use the file with any of rights, as "is owned by …",
// "can be read or changed by …" or, for a directory, "lets … read the
// files created in it" (to follow the file's name); "" when none.
//
// A directory's entries that its new files inherit count as the files'
// own: the store creates its files there without a security descriptor
// of their own, so they hold a secret before they could be checked.
func (d *Descriptor) Problem(user string, rights uint32) string {
	trusted := func(sid string) bool { return sid == user || sid == System || sid == Administrators }
	if !trusted(d.Owner) {
		return fmt.Sprintf("is owned by %s, not by this user", account(d.OwnerName, d.Owner))
	}
	if d.NullDACL {
		return "has no access control list, so everyone may read and change it"
	}
	for _, e := range d.DACL {
		passed := e.InheritOnly && e.ObjectInherit && e.SID != creatorOwner
		if e.Deny || (e.InheritOnly && !passed) || trusted(e.SID) || e.Mask&rights == 0 {
			continue
		}
		verb, done := "change", "changed"
		if e.Mask&WriteRights == 0 {
			verb, done = "read", "read"
		} else if e.Mask&(PrivateRights&^WriteRights) != 0 {
			verb, done = "read and change", "read and changed"
		}
		if passed {
			return fmt.Sprintf("lets %s %s the files created in it", account(e.Name, e.SID), verb)
		}
		return fmt.Sprintf("can be %s by %s", done, account(e.Name, e.SID))
	}
	return ""
}

// Fix is the icacls command that leaves path to userName (DOMAIN\account)
// alone: the inherited entries removed, the user's full control, and for a
// directory passed on to what it will hold. An owner other than the user is
// changed too.
func (d *Descriptor) Fix(path, user, userName string, dir bool) string {
	grant := "F"
	if dir {
		grant = "(OI)(CI)F"
	}
	cmd := []string{"icacls", quote(path)}
	if d.Owner != user && d.Owner != System && d.Owner != Administrators {
		cmd = append(cmd, "/setowner", quote(userName))
	}
	cmd = append(cmd, "/inheritance:r", "/grant:r", quote(userName+":"+grant))
	seen := map[string]bool{}
	for _, e := range d.DACL {
		if e.SID != user && e.SID != System && e.SID != Administrators && !seen[e.SID] && !e.Deny {
			seen[e.SID] = true
			cmd = append(cmd, "/remove", "*"+e.SID)
		}
	}
	return strings.Join(cmd, " ")
}

// account names a SID for a person: its account name when known.
func account(name, sid string) string {
	if name == "" {
		return sid
	}
	return name + " (" + sid + ")"
}

// quote quotes an argument for cmd.exe and PowerShell when it needs it.
func quote(s string) string {
	if strings.ContainsAny(s, " &()^%;,") {
		return `"` + s + `"`
	}
	return s
}
