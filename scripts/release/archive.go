package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// File is one file of an archive.
type File struct {
	Name string // relative to the archive's directory
	Mode fs.FileMode
	Data []byte
}

// Archive packs files under the directory dir, as a .zip or a .tar.gz
// (by name's ending), reproducibly: entries sorted by name, each with
// mtime, owner and group 0 and no names for them, and the mode given; the
// gzip header carries no name nor time.
func Archive(name, dir string, files []File, mtime time.Time) ([]byte, error) {
	files = slices.SortedFunc(slices.Values(files), func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	var buf bytes.Buffer
	switch {
	case strings.HasSuffix(name, ".zip"):
		zw := zip.NewWriter(&buf)
		for _, f := range files {
			h := &zip.FileHeader{Name: path.Join(dir, f.Name), Method: zip.Deflate, Modified: mtime}
			h.SetMode(f.Mode)
			w, err := zw.CreateHeader(h)
			if err != nil {
				return nil, err
			}
			if _, err := w.Write(f.Data); err != nil {
				return nil, err
			}
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case strings.HasSuffix(name, ".tar.gz"):
		gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		tw := tar.NewWriter(gz)
		hdr := func(h *tar.Header) error {
			h.ModTime, h.Uid, h.Gid, h.Format = mtime, 0, 0, tar.FormatPAX
			return tw.WriteHeader(h)
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
		for _, f := range files {
			if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, f.Name), Mode: int64(f.Mode.Perm()), Size: int64(len(f.Data))}); err != nil {
				return nil, err
			}
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		if err := gz.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s: not a .zip or .tar.gz", name)
	}
	return buf.Bytes(), nil
}
