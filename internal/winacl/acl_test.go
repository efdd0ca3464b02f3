package winacl

import "testing"

const (
	me    = "S-1-5-21-1-2-3-1001"
	other = "S-1-5-21-1-2-3-1002"
	users = "S-1-5-32-545"
)

func TestProblem(t *testing.T) {
	full := uint32(0x1f01ff) // FILE_ALL_ACCESS
	read := uint32(0x120089) // FILE_GENERIC_READ
	tests := []struct {
		name   string
		d      Descriptor
		rights uint32
		want   string
	}{
		{"the user, SYSTEM and Administrators only", Descriptor{Owner: me, DACL: []ACE{{SID: me, Mask: full}, {SID: System, Mask: full}, {SID: Administrators, Mask: full}}}, PrivateRights, ""},
		{"owned by Administrators (an elevated prompt made it)", Descriptor{Owner: Administrators, DACL: []ACE{{SID: me, Mask: full}}}, PrivateRights, ""},
		{"owned by another user", Descriptor{Owner: other, OwnerName: `PC\eve`, DACL: []ACE{{SID: me, Mask: full}}}, PrivateRights, `is owned by PC\eve (` + other + `), not by this user`},
		{"no DACL", Descriptor{Owner: me, NullDACL: true}, WriteRights, "has no access control list, so everyone may read and change it"},
		{"Users may read: private refuses", Descriptor{Owner: me, DACL: []ACE{{SID: me, Mask: full}, {SID: users, Name: `BUILTIN\Users`, Mask: read}}}, PrivateRights, `can be read by BUILTIN\Users (` + users + `)`},
		{"Users may read: write-only check accepts", Descriptor{Owner: me, DACL: []ACE{{SID: me, Mask: full}, {SID: users, Mask: read}}}, WriteRights, ""},
		{"another user may write", Descriptor{Owner: me, DACL: []ACE{{SID: other, Mask: 0x2}}}, WriteRights, "can be changed by " + other},
		{"another user has full control", Descriptor{Owner: me, DACL: []ACE{{SID: other, Mask: full}}}, PrivateRights, "can be read and changed by " + other},
		{"GENERIC_ALL", Descriptor{Owner: me, DACL: []ACE{{SID: other, Mask: genericAll}}}, WriteRights, "can be changed by " + other},
		{"a deny entry takes nothing", Descriptor{Owner: me, DACL: []ACE{{SID: other, Deny: true, Mask: full}}}, PrivateRights, ""},
		{"an inherit-only entry (CREATOR OWNER) is not the file's", Descriptor{Owner: me, DACL: []ACE{{SID: "S-1-3-0", InheritOnly: true, ObjectInherit: true, Mask: full}}}, PrivateRights, ""},
		// The files created in a directory take its object-inheritable
		// entries: the token file would be readable from its first write.
		{"a directory passing Users read access to its files", Descriptor{Owner: me, DACL: []ACE{{SID: me, Mask: full}, {SID: users, Name: `BUILTIN\Users`, InheritOnly: true, ObjectInherit: true, Mask: read}}}, PrivateRights,
			`lets BUILTIN\Users (` + users + `) read the files created in it`},
		{"a directory passing another user write access to its files", Descriptor{Owner: me, DACL: []ACE{{SID: other, InheritOnly: true, ObjectInherit: true, Mask: genericWrite}}}, WriteRights,
			"lets " + other + " change the files created in it"},
		{"CREATOR GROUP becomes the new file's group", Descriptor{Owner: me, DACL: []ACE{{SID: "S-1-3-1", InheritOnly: true, ObjectInherit: true, Mask: full}}}, PrivateRights,
			"lets S-1-3-1 read and change the files created in it"},
		{"an entry passed to subdirectories only", Descriptor{Owner: me, DACL: []ACE{{SID: users, InheritOnly: true, Mask: full}}}, PrivateRights, ""},
		{"reading attributes only is no problem", Descriptor{Owner: me, DACL: []ACE{{SID: users, Mask: 0x80 | 0x20000}}}, PrivateRights, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Problem(me, tt.rights); got != tt.want {
				t.Errorf("Problem = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFix(t *testing.T) {
	d := Descriptor{Owner: other, DACL: []ACE{{SID: me, Mask: 1}, {SID: users, Mask: 1}, {SID: users, Mask: 2}, {SID: System, Mask: 1}, {SID: other, Deny: true}}}
	got := d.Fix(`C:\Users\Farmer Brent\AppData\Local\coop-proxy`, me, `PC\Farmer Brent`, true)
	want := `icacls "C:\Users\Farmer Brent\AppData\Local\coop-proxy" /setowner "PC\Farmer Brent" /inheritance:r /grant:r "PC\Farmer Brent:(OI)(CI)F" /remove *` + users
	if got != want {
		t.Errorf("Fix =\n%s\nwant\n%s", got, want)
	}
	d = Descriptor{Owner: me, DACL: []ACE{{SID: me, Mask: 1}}}
	if got, want := d.Fix(`C:\t\tokens.json`, me, `PC\brent`, false), `icacls C:\t\tokens.json /inheritance:r /grant:r PC\brent:F`; got != want {
		t.Errorf("Fix = %s, want %s", got, want)
	}
}
