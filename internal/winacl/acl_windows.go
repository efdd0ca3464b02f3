package winacl

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// CurrentUser is the SID and account name (DOMAIN\account) of the user the
// process runs as.
var CurrentUser = sync.OnceValues(func() (User, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return User{}, fmt.Errorf("reading this process's user: %w", err)
	}
	u := User{SID: tu.User.Sid.String(), Name: lookup(tu.User.Sid)}
	if u.Name == "" {
		u.Name = "*" + u.SID // icacls takes a SID so
	}
	return u, nil
})

// User is an account.
type User struct{ SID, Name string }

// Read reads the owner and DACL of the file or directory at path.
func Read(path string) (*Descriptor, error) {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return nil, fmt.Errorf("reading the access control list of %s: %w", path, err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return nil, fmt.Errorf("reading the owner of %s: %w", path, err)
	}
	d := &Descriptor{Owner: owner.String(), OwnerName: lookup(owner)}
	dacl, _, err := sd.DACL()
	if err == windows.ERROR_OBJECT_NOT_FOUND || (err == nil && dacl == nil) {
		d.NullDACL = true
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the access control list of %s: %w", path, err)
	}
	for i := range uint32(dacl.AceCount) {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return nil, fmt.Errorf("reading the access control list of %s: %w", path, err)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		d.DACL = append(d.DACL, ACE{
			SID:  sid.String(),
			Name: lookup(sid),
			// The denied types: plain, object, callback, callback object.
			// Any other type in a DACL is taken as one that allows.
			Deny: ace.Header.AceType == windows.ACCESS_DENIED_ACE_TYPE || ace.Header.AceType == 6 ||
				ace.Header.AceType == 10 || ace.Header.AceType == 12,
			InheritOnly:   ace.Header.AceFlags&windows.INHERIT_ONLY_ACE != 0,
			ObjectInherit: ace.Header.AceFlags&windows.OBJECT_INHERIT_ACE != 0,
			Mask:          uint32(ace.Mask),
		})
	}
	return d, nil
}

// Restrict gives the directory at path a DACL of its own (inheriting
// nothing from its parent) that allows the current user and SYSTEM full
// control, passed on to the files and directories created in it: the
// Windows counterpart of mode 0700.
func Restrict(path string) error {
	u, err := CurrentUser()
	if err != nil {
		return err
	}
	user, err := windows.StringToSid(u.SID)
	if err != nil {
		return err
	}
	system, err := windows.CreateWellKnownSid(windows.WinLocalSystemSid)
	if err != nil {
		return err
	}
	var entries []windows.EXPLICIT_ACCESS
	for _, sid := range []*windows.SID{user, system} {
		entries = append(entries, windows.EXPLICIT_ACCESS{
			AccessPermissions: windows.GENERIC_ALL,
			AccessMode:        windows.GRANT_ACCESS,
			Inheritance:       windows.SUB_CONTAINERS_AND_OBJECTS_INHERIT,
			Trustee: windows.TRUSTEE{
				TrusteeForm:  windows.TRUSTEE_IS_SID,
				TrusteeType:  windows.TRUSTEE_IS_UNKNOWN,
				TrusteeValue: windows.TrusteeValueFromSID(sid),
			},
		})
	}
	acl, err := windows.ACLFromEntries(entries, nil)
	if err != nil {
		return err
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, acl, nil)
	if err != nil {
		return fmt.Errorf("restricting %s to this user: %w", path, err)
	}
	return nil
}

// lookup is the DOMAIN\account name of sid, or "".
func lookup(sid *windows.SID) string {
	account, domain, _, err := sid.LookupAccount("")
	switch {
	case err != nil:
		return ""
	case domain == "":
		return account
	}
	return domain + `\` + account
}
